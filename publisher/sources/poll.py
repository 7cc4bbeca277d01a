"""Fetch the sources that are due and record their new entries: one source at a time (so
never two fetches at one host at once), each source's failure its own (reported with its
place in schedule.yaml, the others fetched all the same), the next fetch after the
source's interval, or later after failures (doubling) and when the server asks."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from publisher.config import Publication
from publisher.config.models import Source, SourceFilter
from publisher.errors import Problem
from publisher.model import UpstreamEntry
from publisher.sources.fetch import MAX_BYTES, TIMEOUT, Answer, fetch, user_agent
from publisher.sources.parse import FeedError, parse_feed
from publisher.store.upstream import SourceState, record_entries, save_state, source_states

if TYPE_CHECKING:
    import urllib3

MAX_BACKOFF = 86400.0
# Sources whose fetch state is written in one transaction: a poll killed halfway fetches
# those again without their ETag next time, and finds nothing new in them.
SAVE_EVERY = 50
_WORD = re.compile(r"\w+")  # a failing source is still tried once a day


@dataclass(frozen=True)
class Polled:
    """What became of one source in a poll."""

    name: str
    fetched: bool  # False: not due (or gone), nothing was asked
    status: int | None = None
    new: int = 0
    held: int = 0
    next_fetch_at: float = 0.0
    problem: Problem | None = None  # a failure, as schedule.yaml's line and the reason
    note: str | None = None  # moved permanently, gone, held back

    def line(self) -> str:
        """One line for the operator (a failure is its ``problem``)."""
        if not self.fetched:
            when = datetime.fromtimestamp(self.next_fetch_at, UTC).isoformat()
            return f"{self.name}: {self.note or f'not due (next fetch {when})'}"
        what = "not modified" if self.status == 304 else f"{self.new} new"
        return f"{self.name}: {what}" + (f"; {self.note}" if self.note else "")


def poll(
    pub: Publication,
    engine: Engine,
    now: float,
    force: bool = False,
    pool: urllib3.PoolManager | None = None,
    timeout: float = TIMEOUT,
    limit: int = MAX_BYTES,
) -> list[Polled]:
    """Fetch every source that is due at ``now`` (every one with ``force``, but a gone
    one), in schedule.yaml's order; each fetch within ``timeout`` seconds and ``limit``
    bytes."""
    if pool is None:
        import urllib3

        pool = urllib3.PoolManager(num_pools=16, maxsize=1)
    with engine.connect() as db:
        states = source_states(db)
    agent = user_agent(pub.config.site.url)
    done = []
    unsaved: list[SourceState] = []
    try:
        for index, source in enumerate(pub.config.sources):
            polled, state = _poll_one(pub, engine, index, source, states, now, force, pool,
                                      agent, timeout, limit)  # fmt: skip
            done.append(polled)
            if state is not None:
                unsaved.append(state)
            if len(unsaved) >= SAVE_EVERY:
                _save(engine, unsaved)
    finally:
        _save(engine, unsaved)
    return done


def _save(engine: Engine, states: list[SourceState]) -> None:
    if states:
        with engine.begin() as db:
            for state in states:
                save_state(db, state)
        states.clear()


def _poll_one(
    pub: Publication,
    engine: Engine,
    index: int,
    source: Source,
    states: dict[str, SourceState],
    now: float,
    force: bool,
    pool: urllib3.PoolManager,
    agent: str,
    timeout: float,
    limit: int,
) -> tuple[Polled, SourceState | None]:
    """One source: fetched if due; its new state (None when it was not fetched)."""
    state = states.get(source.name)
    if state is None or state.configured_url != source.url:
        # New in schedule.yaml, or given another URL there: from the start.
        state = SourceState(source.name, source.url, source.url)
    if state.gone_at is not None:
        note = "gone (HTTP 410): not fetched again until its url changes"
        return Polled(source.name, False, state.status, note=note), None
    if not force and state.next_fetch_at > now:
        return Polled(source.name, False, state.status, next_fetch_at=state.next_fetch_at), None
    answer = fetch(pool, state.url, agent, state.etag, state.last_modified, timeout, limit)
    return _outcome(pub, index, source, state, answer, engine, now)


def _outcome(
    pub: Publication,
    index: int,
    source: Source,
    state: SourceState,
    answer: Answer,
    engine: Engine,
    now: float,
) -> tuple[Polled, SourceState]:
    where = f"sources[{index}] ({source.name})"
    line = pub.line_of("sources", index)
    notes: list[str] = []
    url = state.url
    if answer.moved is not None:
        url = answer.moved
        notes.append(f"moved permanently to {answer.moved}: fetched from there from now on")
    state = replace(state, url=url, fetched_at=now, status=answer.status)
    if answer.status == 410:
        note = "gone (HTTP 410): not fetched again until its url changes in schedule.yaml"
        state = replace(state, gone_at=now, error="HTTP 410 Gone")
        problem = Problem(pub.path.name, line, where, note)
        return Polled(source.name, True, 410, problem=problem), state
    error = answer.error
    entries: list[UpstreamEntry] = []
    if error is None and answer.body is not None:
        try:
            entries = parse_feed(answer.body, answer.url, answer.content_type)
        except FeedError as exc:
            error = str(exc)
    if error is not None:
        failures = state.failures + 1
        wait = min(source.interval * 2.0 ** (failures - 1), MAX_BACKOFF)
        wait = max(wait, answer.retry_after or 0.0)
        state = replace(state, error=error, failures=failures, next_fetch_at=now + wait)
        problem = Problem(pub.path.name, line, where, f"{error} (next try in {_span(wait)})")
        polled = Polled(source.name, True, answer.status, next_fetch_at=now + wait,
                        problem=problem, note="; ".join(notes) or None)  # fmt: skip
        return polled, state
    new = held = 0
    if answer.status == 200:
        state = replace(state, etag=answer.etag, last_modified=answer.last_modified)
        with engine.begin() as db:
            new, held = record_entries(
                db, source.name, _chosen(source, entries), now, source.hold_above
            )
        if held:
            notes.append(
                f"{held} unseen entries at once (more than hold_above: {source.hold_above}): "
                f"held back; `publisher sources release {source.name}` publishes them"
            )
    wait = max(float(source.interval), answer.retry_after or 0.0)
    state = replace(
        state, error=None, failures=0, next_fetch_at=now + wait, new_entries=new,
        held=state.held + held if answer.status == 200 else state.held,
    )  # fmt: skip
    polled = Polled(source.name, True, answer.status, new, held, now + wait,
                    note="; ".join(notes) or None)  # fmt: skip
    return polled, state


def _chosen(source: Source, entries: Iterable[UpstreamEntry]) -> list[UpstreamEntry]:
    """The entries the source's include and exclude filters let through."""
    return [
        entry
        for entry in entries
        if (source.include is None or _matches(source.include, source, entry))
        and (source.exclude is None or not _matches(source.exclude, source, entry))
    ]


def _matches(rule: SourceFilter, source: Source, entry: UpstreamEntry) -> bool:
    tags = {tag.casefold() for tag in (*entry.tags, *source.tags)}
    if any(tag.casefold() in tags for tag in rule.tags):
        return True
    # Words as words: "sponsored" is in "Sponsored: a boat", not in "unsponsored"; a
    # filter of several words matches them in a row.
    title = f" {' '.join(_WORD.findall(entry.title.casefold()))} "
    return any(
        f" {' '.join(_WORD.findall(word.casefold()))} " in title
        for word in rule.words
        if _WORD.search(word)
    )


def _span(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"
