"""What `publisher run` does at a moment: rebuild the feeds, resume unfinished issues,
send every digest issue that is due and retry the confirmation mails that are due. The
ledger decides, not the scheduler's memory, so a restart, downtime or a second scheduler
changes nothing about what is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from publisher import confirm as confirmation
from publisher.backends import Backend
from publisher.build import BuildReport, build
from publisher.config import Digest, Publication
from publisher.delivery import RunReport, compose, deliver, last_period, open_issue
from publisher.scheduler.triggers import due_period, trigger
from publisher.store import ledger
from publisher.tokens import Signer


@dataclass
class Tick:
    build: BuildReport | None = None
    digests: list[RunReport] = field(default_factory=list)
    confirmations: list[RunReport] = field(default_factory=list)


def run_due(
    pub: Publication,
    engine: Engine,
    now: datetime,
    signer: Signer,
    backends: Callable[[], Sequence[Backend]],
    build_feeds: bool = True,
    should_stop: Callable[[], bool] = lambda: False,
) -> Tick:
    """Everything due at ``now``; returns what was done."""
    tick = Tick()
    if build_feeds:
        tick.build = build(pub, now)
    for digest in pub.config.digests:
        if should_stop():
            break
        report = run_digest(pub, engine, digest, now, signer, backends, should_stop)
        if report is not None:
            tick.digests.append(report)
    if not should_stop():
        tick.confirmations = confirmation.resume(engine, pub, signer, now, backends, should_stop)
    return tick


def run_digest(
    pub: Publication,
    engine: Engine,
    digest: Digest,
    now: datetime,
    signer: Signer,
    backends: Callable[[], Sequence[Backend]],
    should_stop: Callable[[], bool] = lambda: False,
) -> RunReport | None:
    """Resume the digest's unfinished issue, or send the one due now; None if neither."""
    period = None
    if digest.schedule is not None:
        schedule = digest.schedule
        period = due_period(
            trigger(pub, schedule),
            now,
            last_period(engine, digest),
            schedule.catch_up,
            timedelta(seconds=schedule.max_lateness),
        )
    if period is None and not _unfinished(engine, digest):
        return None
    plan = open_issue(engine, pub, digest, now, period)
    if plan is None:
        return RunReport(digest.name, status="nothing new to send")
    letters = compose(engine, pub, digest, plan, now, signer)
    return deliver(engine, pub, digest.name, plan, letters, backends(), should_stop=should_stop)


def _unfinished(engine: Engine, digest: Digest) -> bool:
    with engine.connect() as db:
        return ledger.has_unfinished_issue(db, digest.name)
