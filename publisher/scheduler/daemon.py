"""``publisher run`` in the foreground: APScheduler 3 runs the jobs schedule.yaml describes,
a catch-up pass at start, schedule.yaml reloaded when it changes (an invalid edit keeps the
last good schedule), SIGTERM/SIGINT finish the messages in flight."""

from __future__ import annotations

import functools
import logging
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from publisher.backends import backend_pool
from publisher.config import Publication, load_config
from publisher.delivery import Sender
from publisher.delivery.local import zones_in_use
from publisher.delivery.send import sender_name
from publisher.errors import PublisherError
from publisher.scheduler.duty import ROLE, Duty
from publisher.scheduler.jobs import (
    Tick,
    next_retry,
    read_returns,
    retry_due,
    run_digest,
    run_due,
)
from publisher.scheduler.triggers import LocalStart, trigger
from publisher.store import database_reason
from publisher.store.tasks import on_duty
from publisher.tokens import publication_signer
from publisher.workers.dispatch import placer_for

log = logging.getLogger("publisher.run")
RELOAD_SECONDS = 5
FEEDS_EVERY_SECONDS = 15 * 60  # without a feeds schedule
# How often the ledger is asked when the next retry is due, besides after every pass:
# another process (the web side's sign-ups, a second sender) may have added one.
RETRY_CHECK_SECONDS = 60
RETRY_GAP_SECONDS = 1  # the least time between two retry passes
# How often the sources are looked at: each is fetched when its own interval has passed.
SOURCES_CHECK_SECONDS = 60
# With workers: how often the due rows are looked at for tasks (rows a killed worker of
# this machine held, a task lost with the broker), and the least gap between two looks.
DISPATCH_SECONDS = 10


class Foreground:
    """APScheduler 3 in the foreground: one job per schedule, a catch-up pass at start, the
    configuration reloaded when schedule.yaml changes, SIGTERM/SIGINT honoured."""

    def __init__(self, pub: Publication, report: Callable[[Tick], object]) -> None:
        from apscheduler.schedulers.blocking import BlockingScheduler

        from publisher import store

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
        # APScheduler says at INFO level every job it adds, starts and finishes: two lines
        # every 5 s for the reload check alone, 35,000 a day. Its warnings and errors (a
        # missed run, a failed job) still show; what our jobs did is logged by us.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        self.pub = pub
        self.report = report  # what the catch-up pass found, for the operator
        self.stop = threading.Event()
        self.engine = store.open_database(pub)
        self.scheduler = BlockingScheduler(timezone=UTC)
        self.mtime = pub.path.stat().st_mtime_ns
        self.limited = False  # the last retry pass stopped at a rate limit
        self.planning = threading.Lock()
        self.duty = Duty(self.engine, sender_name(), pub.config.state.duty_lease)
        self.on_duty = False
        self.announced = False  # "standing by" said once

    def start(self) -> int:
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self._shutdown)
        self._schedule()
        self.scheduler.add_job(self._reload, "interval", seconds=RELOAD_SECONDS, id="reload")
        self.scheduler.add_job(self.plan_retries, "interval", seconds=RETRY_CHECK_SECONDS,
                               id="retry-check", coalesce=True, max_instances=1)  # fmt: skip
        self.scheduler.add_job(self._look_at_duty, "interval", seconds=self.duty.every,
                               id="duty", coalesce=True, max_instances=1)  # fmt: skip
        self._look_at_duty()  # on duty: the catch-up pass; else standing by
        scheduled = [d.name for d in self.pub.config.digests if d.schedule is not None]
        log.info("started: %s, feeds and %d scheduled digest(s)%s", self.pub.path.name,
                 len(scheduled), f" ({', '.join(scheduled)})" if scheduled else "")  # fmt: skip
        self.scheduler.start()  # returns after shutdown
        if self.on_duty:
            self._guard(self.duty.leave)  # a standby takes over at its next look
        self.engine.dispose()
        log.info("stopped")
        return 0

    def _look_at_duty(self) -> None:
        """Renew this scheduler's duty, or take it over from one whose lease ended; the
        one that comes on duty first catches up on whatever was due meanwhile."""
        was = self.on_duty
        try:
            self.on_duty = self.duty.check(self._now().timestamp())
        except SQLAlchemyError as exc:
            log.error("state.database: %s (duty is looked at again in %.0f s)",
                      database_reason(exc), self.duty.every)  # fmt: skip
            self.on_duty = False
        if self.on_duty and not was:
            log.info("on duty: composing, building and sending from here")
            # Catch-up: whatever was due while nobody was on duty (the ledger decides).
            self.scheduler.add_job(self._everything, id="catch-up", replace_existing=True)
        elif was and not self.on_duty:
            log.warning("off duty: another scheduler holds it; standing by")
        elif not self.on_duty and not was and not self.announced:
            found = None
            with self.engine.connect() as db:
                found = on_duty(db, ROLE, self._now().timestamp())
            holder = found[0] if found else "another scheduler"
            log.info("standing by: %s is on duty; taking over within %.0f s of its end",
                     holder, self.duty.lease + self.duty.every)  # fmt: skip
        self.announced = True

    def _shutdown(self, number: int, frame: Any) -> None:
        log.info("signal %d: finishing the messages in flight", number)
        self.stop.set()
        self.scheduler.shutdown(wait=False)

    def _schedule(self) -> None:
        pub = self.pub
        for job in self.scheduler.get_jobs():
            if job.id.startswith("job:"):
                job.remove()
        common = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        feeds = pub.config.feeds.schedule
        if feeds is None:
            every = {"seconds": FEEDS_EVERY_SECONDS}
            self.scheduler.add_job(self._feeds, "interval", id="job:feeds", **every, **common)
        else:
            self.scheduler.add_job(self._feeds, trigger(pub, feeds), id="job:feeds", **common)
        if pub.config.sources:
            self.scheduler.add_job(self._sources, "interval", seconds=SOURCES_CHECK_SECONDS,
                                   id="job:sources", **common)  # fmt: skip
        if pub.config.workers is not None:
            self.scheduler.add_job(self._retries, "interval", seconds=DISPATCH_SECONDS,
                                   id="job:dispatch", **common)  # fmt: skip
        returns = pub.config.returns
        if returns is not None and (returns.maildir is not None or returns.imap is not None):
            self.scheduler.add_job(self._returns, "interval", seconds=returns.interval,
                                   id="job:returns", **common)  # fmt: skip
        for digest in pub.config.digests:
            if digest.schedule is not None:
                when = trigger(pub, digest.schedule)
                if digest.deliver_at == "local":
                    # Composed when the hour comes in the first zone of its subscribers.
                    zones = functools.partial(zones_in_use, self.engine, digest,
                                              pub.zone_of(digest.schedule))  # fmt: skip
                    when = LocalStart(when, zones)
                name = digest.name
                self.scheduler.add_job(self._digest, when, args=[name], id=f"job:{name}", **common)

    def _now(self) -> datetime:
        return datetime.now(UTC)

    def _everything(self) -> None:
        def go() -> None:
            pub = self.pub
            tick = run_due(
                pub,
                self.engine,
                self._now(),
                publication_signer(pub),
                lambda: backend_pool(pub),
                should_stop=self.stop.is_set,
            )
            self.report(tick)

        self._guard(go)
        self.plan_retries()

    def plan_retries(self) -> None:
        """Wake for the earliest waiting row of any issue: a retry is sent when its time
        comes, not when its digest's schedule next fires."""

        def go() -> None:
            due = next_retry(self.pub, self.engine)
            with self.planning:  # jobs of several threads plan; one at a time
                self._plan(due)

        self._guard(go)

    def _plan(self, due: float | None) -> None:
        if self.scheduler.get_job("retries") is not None:
            self.scheduler.remove_job("retries")
        if due is None:
            return
        # Never at once again: a row can be due and still not be sent (the hour's rate
        # limit is used up), and a pass that changed nothing must not run in a loop.
        gap = RETRY_GAP_SECONDS if self.pub.config.workers is None else DISPATCH_SECONDS
        soonest = self._now() + timedelta(seconds=gap)
        if self.limited:
            soonest = self._now() + timedelta(seconds=RETRY_CHECK_SECONDS)
        when = max(datetime.fromtimestamp(due, UTC), soonest)
        self.scheduler.add_job(self._retries, "date", run_date=when, id="retries",
                               misfire_grace_time=None)  # fmt: skip

    def _retries(self) -> None:
        def go() -> None:
            pub = self.pub
            tick = retry_due(pub, self.engine, self._now(), publication_signer(pub),
                             lambda: backend_pool(pub), self.stop.is_set)  # fmt: skip
            self.limited = any(r.limited for r in tick.digests + tick.confirmations)
            for report in tick.digests:
                log.info(report.line())
            for report in tick.confirmations:
                log.info("confirmation mails of hour %s: sent %d, deferred %d, failed %d",
                         report.number, report.sent, report.deferred, report.failed)  # fmt: skip

        self._guard(go)
        self.plan_retries()

    def _feeds(self) -> None:
        from publisher.build import build

        self._guard(lambda: self.report(Tick(build=build(self.pub, self._now()))))

    def _sources(self) -> None:
        from publisher.sources.poll import poll

        def go() -> None:
            done = poll(self.pub, self.engine, self._now().timestamp())
            self.report(Tick(sources=[p for p in done if p.fetched]))

        self._guard(go)

    def _returns(self) -> None:
        def go() -> None:
            fetched, problems = read_returns(self.pub, self.engine, self._now(),
                                             publication_signer(self.pub))  # fmt: skip
            self.report(Tick(returns=fetched, problems=problems))

        self._guard(go)
        self.plan_retries()  # a digest resumed, an issue paused: the retries change

    def _digest(self, name: str) -> None:
        def go() -> None:
            pub = self.pub
            sender = Sender(self.engine, pub, backend_pool(pub), should_stop=self.stop.is_set,
                            processes=True, workers=placer_for(pub, self.engine))  # fmt: skip
            for report in run_digest(
                sender, pub.digest(name), self._now(), publication_signer(pub)
            ):
                log.info(report.line())

        self._guard(go)
        self.plan_retries()

    def _guard(self, work: Any) -> None:
        """Run a job; whatever goes wrong is one line of the log, and the scheduler goes on
        (the next run tries again: what was recorded is kept)."""
        if not self.announced:
            self._look_at_duty()  # a job before the first look at duty (start looks first)
        if not self.on_duty:
            return  # standing by: the scheduler on duty does it
        try:
            work()
        except PublisherError as exc:
            for problem in exc.problems:
                log.error("%s", problem)
        except SQLAlchemyError as exc:
            log.error("state.database: %s (the next run tries again)", database_reason(exc))
        except Exception as exc:
            log.error("internal error: %s: %s (please report it)", type(exc).__name__, exc)
            log.debug("the traceback", exc_info=True)

    def _reload(self) -> None:
        try:
            mtime = self.pub.path.stat().st_mtime_ns
        except OSError as exc:
            log.error("%s: %s; keeping the last good schedule", self.pub.path.name, exc.strerror)
            return
        if mtime == self.mtime:
            return
        self.mtime = mtime
        try:
            fresh = load_config(self.pub.path)
        except PublisherError as exc:
            for problem in exc.problems:
                log.error("%s (the last good schedule stays in force)", problem)
            return
        self.pub = fresh
        self._schedule()
        log.info("%s reloaded", fresh.path.name)
