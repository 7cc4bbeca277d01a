"""Opening article files: only regular files inside the content folder, and not too big.

An article folder is edited by people and filled by scrapers, so a file in it can be
anything: a symlink to a file elsewhere on the machine (which would then be published), a
link to ``/dev/zero`` (which would fill the memory), a FIFO (which would block the build
forever). Every reader gets its bytes from here, never from ``open`` directly.
"""

from __future__ import annotations

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


def read_source(path: str, folder: str, shown: str, limit: int) -> tuple[bytes, os.stat_result]:
    """The bytes and the status of the article file ``path``.

    ``folder`` is the content folder's real path (symlinks resolved). A symlink to a file
    inside it is fine; one that leads out of it, anything that is not a regular file, and
    a file over ``limit`` bytes raise ``ContentError``.
    """
    real = os.path.realpath(path)
    if os.path.commonpath([real, folder]) != folder:
        raise ContentError(
            [Problem(shown, None, "file", "is a link to a file outside the content folder")]
        )
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; regular files ignore it.
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
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


def _too_big(shown: str, size: int, limit: int) -> Problem:
    what = f"is {size:,} bytes; articles may have at most {limit:,} (content.max_size)"
    return Problem(shown, None, "file", what)
