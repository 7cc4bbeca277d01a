"""Opening article files: only regular files inside the content folder, and not too big.

An article folder is edited by people and filled by scrapers, so a file in it can be
anything: a symlink to a file elsewhere on the machine (which would then be published), a
link to ``/dev/zero`` (which would fill the memory), a FIFO (which would block the build
forever). Every reader gets its bytes from here, never from ``open`` directly.
"""

from __future__ import annotations

import errno
import os
import stat

from publisher.errors import ContentError, Problem

_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def read_source(path: str, folder: str, shown: str, limit: int) -> tuple[bytes, os.stat_result]:
    """The bytes and the status of the article file ``path`` in the content ``folder``.

    A symlink to a file inside the folder is fine; one that leads out of it, anything that
    is not a regular file, and a file over ``limit`` bytes raise ``ContentError``.
    """
    try:
        fd = _open_inside(path, folder, shown)
    except OSError as exc:
        raise ContentError([Problem(shown, None, "file", f"cannot read: {exc.strerror}")]) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a file")
            what = f"is {kind}, not a regular file"
            raise ContentError([Problem(shown, None, "file", what)])
        if info.st_size > limit:
            raise ContentError([_too_big(shown, info.st_size, limit)])
        chunks = []
        left = limit + 1  # one byte more than allowed tells a file that grew meanwhile
        while left > 0:  # bounded: at most limit + 1 bytes in all
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise ContentError([_too_big(shown, len(data), limit)])
        return data, info
    except OSError as exc:
        raise ContentError([Problem(shown, None, "file", f"cannot read: {exc.strerror}")]) from None
    finally:
        os.close(fd)


def _open_inside(path: str, folder: str, shown: str) -> int:
    # The usual case costs no more than a plain open: a path the scan built below the
    # folder, with no symlink on the way, is opened with O_NOFOLLOW. Only a link (or a
    # path of another shape) is resolved, and must resolve to a place inside the folder.
    # (O_NONBLOCK: opening a FIFO must not wait for a writer; regular files ignore it.)
    if _plain_below(path, folder):
        try:
            return os.open(path, _FLAGS | os.O_NOFOLLOW)
        except OSError as exc:
            if exc.errno != errno.ELOOP:  # ELOOP: the file itself is a symlink
                raise
    real, root = os.path.realpath(path), os.path.realpath(folder)
    if os.path.commonpath([real, root]) != root:
        raise ContentError(
            [Problem(shown, None, "file", "is a link to a file outside the content folder")]
        )
    return os.open(real, _FLAGS)


def _plain_below(path: str, folder: str) -> bool:
    """Whether ``path`` names an entry below ``folder`` through real folders only."""
    if not path.startswith(folder + os.sep):
        return False
    parts = path[len(folder) + 1 :].split(os.sep)
    if any(part in ("", ".", "..") for part in parts):
        return False
    current = folder
    for part in parts[:-1]:  # bounded: the depth of the path
        current = os.path.join(current, part)
        if stat.S_ISLNK(os.lstat(current).st_mode):
            return False
    return True


def _too_big(shown: str, size: int, limit: int) -> Problem:
    what = f"is {size:,} bytes; articles may have at most {limit:,} (content.max_size)"
    return Problem(shown, None, "file", what)
