"""What `publisher run` does at a moment: fetch the upstream feeds that are due, rebuild
the feeds, send every digest issue that is due, and retry every row (of any issue,
confirmation mails too) whose time has come. The ledger decides, not the scheduler's
memory, so a restart, downtime or a second scheduler changes nothing about what is sent.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from publisher import confirm as confirmation
from publisher.backends import Backend
from publisher.build import BuildReport, build
from publisher.config import Digest, Publication
from publisher.delivery import RunReport, Sender, last_period, send_digest, send_waiting
from publisher.delivery.local import zones_in_use
from publisher.errors import PublisherError
from publisher.localtime import compose_moment
from publisher.returns.read import Fetched, fetch_returns
from publisher.scheduler.triggers import due_period, trigger
from publisher.sources.poll import Polled, poll
from publisher.store import ledger
from publisher.tokens import Signer
from publisher.workers.dispatch import placer_for


@dataclass
class Tick:
    build: BuildReport | None = None
    digests: list[RunReport] = field(default_factory=list)
    confirmations: list[RunReport] = field(default_factory=list)
    sources: list[Polled] = field(default_factory=list)
    returns: Fetched | None = None
    problems: list[str] = field(default_factory=list)  # a part that failed; the rest went on


def run_due(
    pub: Publication,
    engine: Engine,
    now: datetime,
    signer: Signer,
    backends: Callable[[], Sequence[Backend]],
    build_feeds: bool = True,
    should_stop: Callable[[], bool] = lambda: False,
    clock: Callable[[], float] | None = None,
) -> Tick:
    """Everything due at ``now``: the feeds, each digest's issue for a period that has come,
    and every retry whose time has come; returns what was done."""
    tick = Tick()
    if pub.config.sources:  # those due: their new entries before anything reads them
        tick.sources = poll(pub, engine, now.timestamp())
    # What came back first: a bounce or a complaint counts before the next issue goes out.
    tick.returns, tick.problems = read_returns(pub, engine, now, signer)
    if build_feeds:
        tick.build = build(pub, now)
    sender = _sender(pub, engine, backends, should_stop, clock)
    for digest in pub.config.digests:
        if should_stop():
            break
        tick.digests += run_digest(sender, digest, now, signer)
    if not should_stop():
        tick.confirmations = confirmation.resume(sender, signer, now)
    return tick


def read_returns(
    pub: Publication, engine: Engine, now: datetime, signer: Signer
) -> tuple[Fetched | None, list[str]]:
    """One read of the return mailbox, if there is one. A mailbox that cannot be read is
    a problem of its own: the feeds and digests go on."""
    try:
        return fetch_returns(engine, pub, signer, now.timestamp()), []
    except PublisherError as exc:
        return None, [str(problem) for problem in exc.problems]


def retry_due(
    pub: Publication,
    engine: Engine,
    now: datetime,
    signer: Signer,
    backends: Callable[[], Sequence[Backend]],
    should_stop: Callable[[], bool] = lambda: False,
    clock: Callable[[], float] | None = None,
) -> Tick:
    """The rows whose retry time has come, of every unfinished issue (digests and
    confirmation mails alike), whatever the digests' schedules say."""
    tick = Tick()
    sender = _sender(pub, engine, backends, should_stop, clock)
    for digest in pub.config.digests:
        if should_stop():
            return tick
        tick.digests += send_waiting(sender, digest, now, signer)
    if not should_stop():
        tick.confirmations = confirmation.resume(sender, signer, now)
    return tick


def run_digest(sender: Sender, digest: Digest, now: datetime, signer: Signer) -> list[RunReport]:
    """The due rows of the digest's unfinished issues, and its issue for the period that
    has come, if one has; an unfinished older issue never holds back the next."""
    pub, engine = sender.pub, sender.engine
    if digest.schedule is None:
        period = None
    else:
        schedule = digest.schedule
        starts = None
        if digest.deliver_at == "local":
            zones = zones_in_use(engine, digest, pub.zone_of(schedule))
            starts = functools.partial(compose_moment, zones=zones)
        period = due_period(
            trigger(pub, schedule),
            now,
            last_period(engine, digest),
            schedule.catch_up,
            timedelta(seconds=schedule.max_lateness),
            starts,
        )
    if period is None:
        # Nothing new is due: only retries (an unscheduled digest is sent by hand).
        return send_waiting(sender, digest, now, signer)
    reports = send_digest(sender, digest, now, signer, period)
    return reports or [RunReport(digest.name, status="nothing new to send")]


def next_retry(pub: Publication, engine: Engine) -> float | None:
    """When the earliest waiting row of any issue being sent is due, or a paused issue is
    to be tried again (epoch seconds)."""
    with engine.connect() as db:
        return ledger.next_due(db, pub.config.delivery.retry_first)


def _sender(
    pub: Publication,
    engine: Engine,
    backends: Callable[[], Sequence[Backend]],
    should_stop: Callable[[], bool],
    clock: Callable[[], float] | None,
) -> Sender:
    return Sender(engine, pub, backends(), clock=clock or time.time, should_stop=should_stop,
                  processes=True, workers=placer_for(pub, engine))  # fmt: skip
