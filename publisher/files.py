"""Writing output files so that a reader never sees half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from types import TracebackType


def private_file(path: Path) -> None:
    """Make ``path`` (and its folder, if new) readable by its owner only.

    State files hold subscriber addresses and tokens' public ids: created 0600 in a 0700
    folder, whatever the umask, and an existing one made wider by an older version is
    narrowed. (SQLite gives its -wal and -shm files the database file's mode.)
    """
    folder = path.parent
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    # O_RDONLY: a database only readable to this user (a look with `publisher status`)
    # must still open; and only its owner may narrow it.
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        info = os.fstat(fd)
        if info.st_mode & 0o077 and info.st_uid == os.geteuid():
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def private_folder(folder: Path) -> None:
    """A folder (and its parents, if new) only its owner can enter."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder.stat().st_mode & 0o077:
        folder.chmod(0o700)


class AtomicWriter:
    """Write a file through a temporary file in the same folder and a rename.

    The rename makes the switch atomic for readers while the system runs. ``durable``
    adds an fsync so the new bytes also survive a power cut; feeds do without it (it costs
    ~0.4 s on a 90 MB feed, and a feed lost that way is noticed and rebuilt by the next
    build, which checks every file's size and mtime against what it wrote). Leaving the
    ``with`` block without ``commit`` removes the temporary file and keeps the old one.

    """

    def __init__(self, path: Path, durable: bool = False) -> None:
        self.path = path
        self.durable = durable
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        self.temp = Path(temp)
        self.handle = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self.handle.write(data)

    def commit(self) -> None:
        """Put the new file in place of the old one."""
        self.handle.flush()
        if self.durable:
            os.fsync(self.handle.fileno())
        self.handle.close()
        self.temp.chmod(0o644)  # mkstemp makes 0600; feeds are meant to be served
        self.temp.replace(self.path)

    def abort(self) -> None:
        self.handle.close()
        self.temp.unlink(missing_ok=True)

    def close(self) -> None:
        """Abort unless committed."""
        if not self.handle.closed:
            self.abort()

    def __enter__(self) -> AtomicWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def replace_small(path: str | Path, data: bytes) -> os.stat_result:
    """Put ``data`` in place of ``path`` through a temporary file and a rename, for the
    thousands of small files of a site: the temporary name is this process's (no random
    names to try, as ``mkstemp`` does: a third of a page's cost), and the folder must
    exist. A temporary file left by a killed build of the same process id is simply
    overwritten. Returns the new file's status (the rename keeps it), saving a stat."""
    name = os.fspath(path)
    folder, base = os.path.split(name)
    temporary = os.path.join(folder, f".{base}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:  # bounded: each write takes at least a byte or raises
                view = view[os.write(fd, view) :]
            info = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(temporary, name)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return info


def write_atomic(path: Path, data: bytes, durable: bool = False) -> bool:
    """Replace ``path`` with ``data``; False (file untouched, mtime kept) when it already
    held exactly these bytes. For small files: the old one is read to compare."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    with AtomicWriter(path, durable) as writer:
        writer.write(data)
        writer.commit()
    return True
