"""Writing output files so that a reader never sees half of one."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from types import TracebackType


class AtomicWriter:
    """Write a file through a temporary file in the same folder and a rename.

    The rename makes the switch atomic for readers while the system runs. ``durable``
    adds an fsync so the new bytes also survive a power cut; feeds do without it (it costs
    ~0.4 s on a 90 MB feed, and a feed lost that way is noticed and rebuilt by the next
    build, which checks every file's size and mtime against what it wrote).

    ``commit`` keeps the old file (and its mtime) when the new bytes are the same: feed
    readers and HTTP caches then see an unchanged file. Leaving the ``with`` block on an
    exception removes the temporary file and leaves the old one in place.
    """

    def __init__(self, path: Path, durable: bool = False) -> None:
        self.path = path
        self.durable = durable
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        self.temp = Path(temp)
        self.handle = os.fdopen(fd, "wb")
        # SHA-256 runs on the CPU's SHA extensions: ~4x faster than BLAKE2 here, on megabytes.
        self.digest = hashlib.sha256()
        self.size = 0
        # The old file's digest, when the caller knows it: saves reading the old file back.
        self.previous_digest: bytes | None = None

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.digest.update(data)
        self.size += len(data)

    def commit(self) -> bool:
        """Put the new file in place; False if the old one already had these bytes."""
        self.handle.flush()
        if self.previous_digest is not None:
            same = self.previous_digest == self.digest.digest()
        else:
            same = _same(self.path, self.size, self.digest.digest())
        if same:
            self.abort()
            return False
        if self.durable:
            os.fsync(self.handle.fileno())
        self.handle.close()
        self.temp.chmod(0o644)  # mkstemp makes 0600; feeds are meant to be served
        self.temp.replace(self.path)
        return True

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


def _same(path: Path, size: int, digest: bytes) -> bool:
    try:
        if path.stat().st_size != size:
            return False
        old = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                old.update(chunk)
    except FileNotFoundError:
        return False
    return old.digest() == digest


def write_atomic(path: Path, data: bytes) -> bool:
    """Replace ``path`` with ``data``; False (file untouched) when it already held them."""
    with AtomicWriter(path) as writer:
        writer.write(data)
        return writer.commit()
