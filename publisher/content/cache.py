"""The incremental build cache: what each article file rendered to, keyed by its content.

One row per article path. A row is reused only when its key — a hash of the file's bytes,
the reader version and every setting that shapes the output — is the same as now; so an
edited file, a new reader or a changed schedule.yaml setting all render again. Like git's
index, a row also remembers the file's size, mtime and inode: while those are unchanged the
file is not even read again. The cache is disposable: deleting it only makes the next build
a cold one.

A row keeps the small facts a build needs in plain columns; the big rendered parts (one
fragment per feed format) live in a table of their own, so a rebuild loads only the small
part and streams the fragments of each feed from the database into the file, in order.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from publisher.errors import Problem
from publisher.files import private_file

SCHEMA_VERSION = 10
SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    path TEXT PRIMARY KEY,
    key BLOB NOT NULL,
    stat TEXT NOT NULL,
    digest BLOB,
    sort TEXT NOT NULL,
    slug TEXT,
    date TEXT,
    modified TEXT,
    tags TEXT,
    draft INTEGER,
    files TEXT,
    link TEXT,
    linked TEXT,
    used_mtime INTEGER NOT NULL,
    mtime REAL NOT NULL,
    problems TEXT,
    -- When a build first met the file (kept while it exists): of two files claiming one
    -- slug, the one met first keeps it.
    seen REAL NOT NULL
);
-- The big parts live apart, so that reading the small columns of 10,000 entries stays a
-- read of a few hundred kilobytes. kind: 'rss', 'atom', 'json', or 'page' (the article as
-- the site's pages need it, JSON).
CREATE TABLE IF NOT EXISTS blobs (
    path TEXT NOT NULL,
    kind TEXT NOT NULL,
    sort TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (path, kind)
);
CREATE INDEX IF NOT EXISTS blobs_order ON blobs (kind, sort);
"""
FORMATS = ("rss", "atom", "json")
KINDS = (*FORMATS, "page")
# Paths asked for in one query (SQLite allows 32,766 parameters since 3.32).
_IN_LIMIT = 500
# Joins tags in one column; a control character, so never part of a tag.
_SEP = "\x1f"


# Entry and Outcome are NamedTuples, not dataclasses: a rebuild makes 10,000 of each, and a
# tuple is built several times faster than a frozen dataclass.
class Entry(NamedTuple):
    """What a build needs to know of a published article to place it in feeds."""

    path: str
    digest: bytes  # of the rendered fragments: equal digests, equal feed bytes
    sort: str  # see sort_key
    slug: str
    date: datetime
    modified: datetime
    tags: tuple[str, ...]
    draft: bool
    files: tuple[str, ...] = ()  # what the site publishes with it (publication-relative)
    link: str = ""  # its permalink (or its own `link:`)
    # The articles it links to: (publication-relative source path, permalink it used).
    linked: tuple[tuple[str, str], ...] = ()


class Outcome(NamedTuple):
    """What one article file became: an entry (with warnings), or the problems that keep
    it out."""

    entry: Entry | None
    problems: tuple[Problem, ...]
    mtime: float
    used_mtime: bool


class Cached(NamedTuple):
    key: bytes  # of the source file's bytes and the settings
    stat: str  # see stat_signature; "" when the file must be checked by content
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Row:
    outcome: Outcome
    path: str
    key: bytes  # of the source file's bytes and the settings
    stat: str
    rss: bytes | None
    atom: bytes | None
    json: bytes | None
    page: bytes | None = None
    # The article's page, if the reader wrote it: (path below the site, its record).
    written: tuple[str, dict[str, Any]] | None = None


def stat_signature(fingerprint: bytes, size: int, mtime_ns: int, inode: int) -> str:
    # The settings' fingerprint is part of it: a changed setting must not look "unchanged".
    return f"{fingerprint.hex()}:{size}:{mtime_ns}:{inode}"


def sort_key(date: datetime, slug: str) -> str:
    """Orders entries newest first when read descending; same instant: by slug."""
    return date.astimezone(UTC).strftime("%Y%m%dT%H%M%S%f") + " " + slug


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
                    self.db.execute("CREATE TEMP VIEW blobs AS SELECT * FROM disk.blobs")
                    return
            self.db.executescript(SCHEMA)
            return
        private_file(file)  # it holds the text of unpublished drafts too
        self.db = sqlite3.connect(file, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        if self._version("main") != SCHEMA_VERSION:
            # An older layout: start again rather than migrate a disposable cache.
            self.db.execute("DROP TABLE IF EXISTS entries")
            self.db.execute("DROP TABLE IF EXISTS blobs")
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

    def cached(self) -> dict[str, Cached]:
        """Everything the cache knows, per path: key, stat signature and outcome."""
        query = (
            "SELECT path, key, stat, digest, sort, slug, date, modified, tags, draft, files,"
            " link, linked, used_mtime, mtime, problems FROM entries"
        )
        found: dict[str, Cached] = {}
        fromiso = datetime.fromisoformat
        with closing(self.db.execute(query)) as rows:
            for row in rows:
                path, key, stat, digest, sort, slug, date, modified, tags, draft = row[:10]
                files, link, linked, used, mtime, problems = row[10:]
                entry = None
                if slug is not None:
                    entry = Entry(
                        path,
                        digest,
                        sort,
                        slug,
                        fromiso(date),
                        fromiso(modified),
                        tuple(tags.split(_SEP)) if tags else (),
                        bool(draft),
                        tuple(files.split(_SEP)) if files else (),
                        link or "",
                        tuple(map(tuple, json.loads(linked))) if linked else (),
                    )
                listed = tuple(Problem(*p) for p in json.loads(problems)) if problems else ()
                found[path] = Cached(key, stat, Outcome(entry, listed, mtime, bool(used)))
        return found

    def store(self, rows: Iterable[Row], batch: int = 256) -> None:
        """Insert or replace rows, ``batch`` at a time, each batch a transaction of its
        own; ``rows`` is consumed lazily. A path new to the cache is recorded as seen now.

        Every row stands on its own (its key says what it was made from), so a build
        stopped halfway keeps the rows it stored. Committing as the rows arrive lets
        SQLite copy the write-ahead log into the database while the workers still read
        articles, rather than all of it (some 350 MB for 10,000 articles) at the end."""
        seen = time.time()
        for chunk in _chunks(rows, batch):
            self._store(chunk, seen)

    def _store(self, chunk: list[Row], seen: float) -> None:
        self.db.execute("BEGIN")
        try:
            entries = [_columns(row) for row in chunk]
            self.db.executemany(
                "INSERT INTO entries (path, key, stat, digest, sort, slug, date, modified,"
                " tags, draft, files, link, linked, used_mtime, mtime, problems, seen)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (path) DO UPDATE SET key = excluded.key,"
                " stat = excluded.stat, digest = excluded.digest, sort = excluded.sort,"
                " slug = excluded.slug, date = excluded.date, modified = excluded.modified,"
                " tags = excluded.tags, draft = excluded.draft, files = excluded.files,"
                " link = excluded.link, linked = excluded.linked,"
                " used_mtime = excluded.used_mtime, mtime = excluded.mtime,"
                " problems = excluded.problems",
                [(*columns, seen) for columns in entries],
            )
            # A file that no longer renders, or a format no longer published, must not
            # leave old fragments behind.
            self.db.executemany(
                "DELETE FROM blobs WHERE path = ?",
                [
                    (row.path,)
                    for row in chunk
                    if not (row.rss and row.atom and row.json and row.page)
                ],
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO blobs (path, kind, sort, data) VALUES (?, ?, ?, ?)",
                (
                    (row.path, kind, columns[4], data)
                    for row, columns in zip(chunk, entries, strict=True)
                    for kind, data in (
                        ("rss", row.rss),
                        ("atom", row.atom),
                        ("json", row.json),
                        ("page", row.page),
                    )
                    if data  # None or empty: a format not published, or no site
                ),
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def first_seen(self, paths: Iterable[str]) -> dict[str, float]:
        """When a build first met each of ``paths`` (those the cache has)."""
        found: dict[str, float] = {}
        for path in paths:
            row = self.db.execute("SELECT seen FROM entries WHERE path = ?", (path,)).fetchone()
            if row is not None:
                found[path] = float(row[0])
        return found

    def records(self, kind: str, paths: Iterable[str]) -> dict[str, bytes]:
        """The ``kind`` blob of each of ``paths`` that has one (for a page's few dozen
        paths; ``fragments`` streams them all): one query for them all, not one each."""
        if kind not in KINDS:
            raise ValueError(kind)
        wanted = list(dict.fromkeys(paths))
        found: dict[str, bytes] = {}
        for start in range(0, len(wanted), _IN_LIMIT):
            some = wanted[start : start + _IN_LIMIT]
            marks = ",".join("?" * len(some))
            query = f"SELECT path, data FROM blobs WHERE kind = ? AND path IN ({marks})"
            for path, data in self.db.execute(query, (kind, *some)):
                found[path] = bytes(data)
        return found

    def fragments(self, kind: str, paths: set[str]) -> Iterator[tuple[str, bytes]]:
        """The ``kind`` fragment of each of ``paths``, newest entry first."""
        if kind not in KINDS:
            raise ValueError(kind)
        query = "SELECT path, data FROM blobs WHERE kind = ? ORDER BY sort DESC"
        with closing(self.db.execute(query, (kind,))) as rows:
            for path, data in rows:
                if path in paths:
                    yield path, bytes(data)

    def forget(self, gone: list[str]) -> None:
        """Drop rows of files that no longer exist."""
        if gone:
            self.db.execute("BEGIN")
            self.db.executemany("DELETE FROM entries WHERE path = ?", ((p,) for p in gone))
            self.db.executemany("DELETE FROM blobs WHERE path = ?", ((p,) for p in gone))
            self.db.execute("COMMIT")


def _chunks(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _columns(row: Row) -> tuple[object, ...]:
    outcome = row.outcome
    entry = outcome.entry
    problems = (
        json.dumps([[p.path, p.line, p.where, p.what] for p in outcome.problems])
        if outcome.problems
        else None
    )
    if entry is None:
        head: tuple[object, ...] = (None, "", None, None, None, None, None, None, None, None)
    else:
        head = (
            entry.digest,
            entry.sort,
            entry.slug,
            entry.date.isoformat(),
            entry.modified.isoformat(),
            _SEP.join(entry.tags),
            int(entry.draft),
            _SEP.join(entry.files),
            entry.link,
            json.dumps(entry.linked) if entry.linked else None,
        )
    return (
        row.path,
        row.key,
        row.stat,
        *head,
        int(outcome.used_mtime),
        outcome.mtime,
        problems,
    )
