"""The incremental build cache: what an article file rendered to, keyed by its content.

One row per article path. A row is reused only when the key — a hash of the file's bytes,
the reader version and every setting that shapes the output — is the same as now; so an
edited file, a new reader or a changed schedule.yaml setting all re-render. The cache is
disposable: deleting the file only makes the next build a cold one.

Values are pickled. The state folder belongs to the operator (like the database); nothing
from outside is ever unpickled.
"""

from __future__ import annotations

import hashlib
import pickle
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries"
    " (path TEXT PRIMARY KEY, key BLOB NOT NULL, value BLOB NOT NULL)"
)


def content_key(fingerprint: bytes, path: str, raw: bytes) -> bytes:
    digest = hashlib.blake2b(fingerprint, digest_size=20)
    digest.update(path.encode("utf-8", "surrogateescape") + b"\0")
    digest.update(raw)
    return digest.digest()


class BuildCache:
    def __init__(self, file: Path, readonly: bool = False) -> None:
        self.file = file
        if readonly:
            # A read-only look creates nothing: an absent cache is an empty one.
            self.db = sqlite3.connect(":memory:", isolation_level=None, uri=True)
            if file.exists():
                self.db.execute("ATTACH DATABASE ? AS disk", (f"{file.as_uri()}?mode=ro",))
                self.db.execute("CREATE TEMP VIEW entries AS SELECT * FROM disk.entries")
            else:
                self.db.execute(SCHEMA)
            return
        file.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(file, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> BuildCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def keys(self) -> dict[str, bytes]:
        with closing(self.db.execute("SELECT path, key FROM entries")) as rows:
            return {path: bytes(key) for path, key in rows}

    def load(self, paths: Iterable[str]) -> Iterator[tuple[str, Any]]:
        wanted = set(paths)
        with closing(self.db.execute("SELECT path, value FROM entries")) as rows:
            for path, value in rows:
                if path in wanted:
                    yield path, pickle.loads(value)

    def store(self, rows: Iterable[tuple[str, bytes, Any]]) -> None:
        self.db.execute("BEGIN")
        try:
            self.db.executemany(
                "INSERT OR REPLACE INTO entries (path, key, value) VALUES (?, ?, ?)",
                (
                    (path, key, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
                    for path, key, value in rows
                ),
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def forget_except(self, keep: set[str]) -> None:
        """Drop rows of files that no longer exist."""
        gone = [p for p in self.keys() if p not in keep]
        if gone:
            self.db.executemany("DELETE FROM entries WHERE path = ?", ((p,) for p in gone))
