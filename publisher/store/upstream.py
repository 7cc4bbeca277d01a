"""Upstream feeds in the state database: what each source's fetches found (``sources``)
and every entry ever seen (``source_entries``). An entry is new the first time its
identity is seen, and only then: the feed may show it again, update it or give it a new
id, and it is still the one entry."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.engine import Connection

from publisher.model import UpstreamEntry
from publisher.store.schema import source_entries, sources

# source_entries.held: what becomes of an entry.
SHOWN = 0  # published (as its source's settings say)
HELD = 1  # one of a flood of unseen entries: held back until the operator releases it
REPEAT = 2  # an entry seen before under another id (same link and title): never shown


@dataclass(frozen=True)
class SourceState:
    """A source as its fetches left it."""

    name: str
    url: str
    configured_url: str
    etag: str | None = None
    last_modified: str | None = None
    fetched_at: float | None = None
    status: int | None = None
    error: str | None = None
    new_entries: int = 0
    held: int = 0
    next_fetch_at: float = 0.0
    failures: int = 0
    gone_at: float | None = None


@dataclass(frozen=True)
class Stored:
    """An entry to publish: its source, when it was first seen, the entry itself."""

    source: str
    first_seen: float
    entry: UpstreamEntry


def source_states(db: Connection) -> dict[str, SourceState]:
    rows = db.execute(select(sources)).mappings()
    return {row["name"]: SourceState(**row) for row in rows}


def save_state(db: Connection, state: SourceState) -> None:
    values = asdict(state)
    done = db.execute(update(sources).where(sources.c.name == state.name).values(values))
    if done.rowcount == 0:
        db.execute(sources.insert().values(values))


def record_entries(
    db: Connection, source: str, entries: Iterable[UpstreamEntry], now: float, hold_above: int
) -> tuple[int, int]:
    """Record a fetch's entries: those never seen are new (first seen ``now``); those seen
    before keep their first sighting and take the feed's current text. More than
    ``hold_above`` new entries at once are held back. Returns (new, held)."""
    known: dict[str, str] = {}  # identity -> the text recorded
    sameness: set[str] = set()
    rows = db.execute(
        select(source_entries.c.identity, source_entries.c.sameness, source_entries.c.data)
        .where(source_entries.c.source == source)
    )  # fmt: skip
    for identity, same, data in rows:
        known[identity] = data
        sameness.add(same)
    fresh: list[UpstreamEntry] = []
    repeats: list[UpstreamEntry] = []
    changed: list[dict[str, str]] = []
    for entry in entries:
        data = _data(entry)
        if entry.identity in known:
            if known[entry.identity] != data:  # edited upstream: the new text, kept
                changed.append({"key": entry.identity, "text": data})
        elif entry.sameness in sameness:
            repeats.append(entry)  # rss2email's classic duplicate: a new id, the same entry
        else:
            fresh.append(entry)
        known[entry.identity] = data
        sameness.add(entry.sameness)
    if changed:  # one statement for all of them
        db.execute(
            update(source_entries)
            .where(and_(source_entries.c.source == source,
                        source_entries.c.identity == bindparam("key")))
            .values(data=bindparam("text")),
            changed,
        )  # fmt: skip
    held = HELD if len(fresh) > hold_above else SHOWN
    rows_to_add = [(entry, held) for entry in fresh] + [(entry, REPEAT) for entry in repeats]
    if rows_to_add:
        db.execute(
            source_entries.insert(),
            [
                {"source": source, "identity": entry.identity, "sameness": entry.sameness,
                 "first_seen": now, "held": status, "data": _data(entry)}
                for entry, status in rows_to_add
            ],
        )  # fmt: skip
    return len(fresh), len(fresh) if held == HELD else 0


def release(db: Connection, source: str) -> int:
    """Publish the entries of ``source`` held back; how many there were."""
    done = db.execute(
        update(source_entries)
        .where(and_(source_entries.c.source == source, source_entries.c.held == HELD))
        .values(held=SHOWN)
    )
    db.execute(update(sources).where(sources.c.name == source).values(held=0))
    return int(done.rowcount)


def shown_entries(db: Connection, names: Iterable[str]) -> list[Stored]:
    """The entries of the sources ``names`` that are published, oldest sighting first."""
    wanted = list(names)
    if not wanted:
        return []
    rows = db.execute(
        select(source_entries.c.source, source_entries.c.first_seen, source_entries.c.data)
        .where(and_(source_entries.c.source.in_(wanted), source_entries.c.held == SHOWN))
    )  # fmt: skip
    found = [Stored(source, first_seen, _entry(data)) for source, first_seen, data in rows]
    # Oldest sighting first; entries first seen together in the feed's own date order.
    found.sort(key=lambda s: (s.first_seen, s.entry.published or "", s.entry.identity))
    return found


def entry_counts(db: Connection) -> dict[str, tuple[int, int]]:
    """Per source: (entries shown, entries held)."""
    rows = db.execute(
        select(source_entries.c.source, source_entries.c.held, func.count())
        .group_by(source_entries.c.source, source_entries.c.held)
    )  # fmt: skip
    counts: dict[str, tuple[int, int]] = {}
    for source, held, count in rows:
        shown, kept = counts.get(source, (0, 0))
        if held == SHOWN:
            shown += count
        elif held == HELD:
            kept += count
        counts[source] = (shown, kept)
    return counts


def _data(entry: UpstreamEntry) -> str:
    return json.dumps(asdict(entry), ensure_ascii=False, sort_keys=True)


def _entry(data: str) -> UpstreamEntry:
    fields: dict[str, Any] = json.loads(data)
    fields["tags"] = tuple(fields.get("tags") or ())
    return UpstreamEntry(**fields)
