"""The incremental build cache: what each article file rendered to, keyed by its content.

One row per article path. A row is reused only when its key — a hash of the file's bytes,
the reader version and every setting that shapes the output — is the same as now; so an
edited file, a new reader or a changed schedule.yaml setting all render again. The cache is
disposable: deleting the file only makes the next build a cold one.

A row keeps the small facts a build needs (``meta``) apart from the big rendered parts
(the article, one fragment per feed format), so a rebuild loads only the small part and
streams the fragments of each feed straight from the database into the file, in order.

``meta`` and ``article`` are pickled. The state folder belongs to the operator (like the
database); nothing from outside is ever unpickled.
"""

from __future__ import annotations

import pickle
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    path TEXT PRIMARY KEY,
    key BLOB NOT NULL,
    sort TEXT NOT NULL,
    meta BLOB NOT NULL,
    article BLOB,
    rss BLOB,
    atom BLOB,
    json BLOB
);
CREATE INDEX IF NOT EXISTS entries_sort ON entries (sort);
"""
FORMATS = ("rss", "atom", "json")


@dataclass(frozen=True, slots=True)
class Row:
    path: str
    key: bytes
    sort: str  # orders rows newest first when read descending
    meta: Any
    article: bytes | None  # pickled Article
    rss: bytes | None
    atom: bytes | None
    json: bytes | None


class BuildCache:
    def __init__(self, file: Path, readonly: bool = False) -> None:
        self.file = file
        if readonly:
            # A read-only look creates nothing: an absent cache is an empty one.
            self.db = sqlite3.connect(":memory:", isolation_level=None, uri=True)
            if file.exists():
                self.db.execute("ATTACH DATABASE ? AS disk", (f"{file.as_uri()}?mode=ro",))
                if self._version("disk") == SCHEMA_VERSION:
                    self.db.execute("CREATE TEMP VIEW entries AS SELECT * FROM disk.entries")
                    return
            self.db.executescript(SCHEMA)
            return
        file.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(file, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        if self._version("main") != SCHEMA_VERSION:
            # An older layout: start again rather than migrate a disposable cache.
            self.db.execute("DROP TABLE IF EXISTS entries")
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self.db.executescript(SCHEMA)

    def _version(self, schema: str) -> int:
        (version,) = self.db.execute(f"PRAGMA {schema}.user_version").fetchone()
        return int(version)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> BuildCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def keys(self) -> dict[str, bytes]:
        with closing(self.db.execute("SELECT path, key FROM entries")) as rows:
            return {path: bytes(key) for path, key in rows}

    def metas(self, paths: set[str]) -> Iterator[tuple[str, Any]]:
        with closing(self.db.execute("SELECT path, meta FROM entries")) as rows:
            for path, meta in rows:
                if path in paths:
                    yield path, pickle.loads(meta)

    def store(self, rows: Iterable[Row]) -> None:
        """Insert or replace rows in one transaction; ``rows`` is consumed lazily."""
        self.db.execute("BEGIN")
        try:
            self.db.executemany(
                "INSERT OR REPLACE INTO entries (path, key, sort, meta, article, rss, atom, json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        r.path,
                        r.key,
                        r.sort,
                        pickle.dumps(r.meta, protocol=pickle.HIGHEST_PROTOCOL),
                        r.article,
                        r.rss,
                        r.atom,
                        r.json,
                    )
                    for r in rows
                ),
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def fragments(self, kind: str, paths: set[str]) -> Iterator[tuple[str, bytes]]:
        """The ``kind`` fragment of each of ``paths``, newest entry first."""
        if kind not in FORMATS:
            raise ValueError(kind)
        query = f"SELECT path, {kind} FROM entries ORDER BY sort DESC"
        with closing(self.db.execute(query)) as rows:
            for path, data in rows:
                if path in paths:
                    yield path, bytes(data)

    def articles(self, paths: set[str]) -> Iterator[tuple[str, Any]]:
        with closing(self.db.execute("SELECT path, article FROM entries")) as rows:
            for path, data in rows:
                if path in paths and data is not None:
                    yield path, pickle.loads(data)

    def forget_except(self, keep: set[str]) -> None:
        """Drop rows of files that no longer exist."""
        gone = [p for p in self.keys() if p not in keep]
        if gone:
            self.db.executemany("DELETE FROM entries WHERE path = ?", ((p,) for p in gone))
