"""``publisher run`` (the scheduler, or one pass with --once) and ``publisher plan``."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from publisher import confirm as confirmation
from publisher.backends import Backend, backend_pool
from publisher.cli.common import print_problems, signer
from publisher.config import Publication, load_config
from publisher.errors import PublisherError
from publisher.runner import Tick, plan, run_digest, run_due, trigger

log = logging.getLogger("publisher.run")
RELOAD_SECONDS = 5
FEEDS_EVERY_SECONDS = 15 * 60  # without a feeds schedule
CONFIRMATIONS_SECONDS = 60  # how often deferred confirmation mails are looked at


def backends_for(pub: Publication) -> Sequence[Backend]:
    return backend_pool(pub)


def _report(tick: Tick) -> int:
    status = 0
    if tick.build is not None:
        print_problems(tick.build)
        changed = sum(f.written for f in tick.build.feeds)
        print(f"feeds: {len(tick.build.feeds)} file(s), {changed} changed")
        status = 1 if tick.build.skipped else 0
    for report in tick.digests:
        print(report.line())
        if report.status not in ("done", "nothing new to send"):
            status = 1
    for report in tick.confirmations:  # only those that had something to do
        print(f"confirmation mails of hour {report.number}: sent {report.sent}, deferred "
              f"{report.deferred}, failed {report.failed}, pending {report.pending}")  # fmt: skip
    return status


def run(pub: Publication, args: argparse.Namespace, now: datetime) -> int:
    from publisher import store

    token_signer = signer(pub)
    if args.once:
        engine = store.open_database(pub)
        try:
            tick = run_due(pub, engine, now, token_signer, lambda: backends_for(pub))
        finally:
            engine.dispose()
        return _report(tick)
    return Foreground(pub).start()


class Foreground:
    """APScheduler 3 in the foreground: one job per schedule, a catch-up pass at start, the
    configuration reloaded when schedule.yaml changes, SIGTERM/SIGINT honoured."""

    def __init__(self, pub: Publication) -> None:
        from apscheduler.schedulers.blocking import BlockingScheduler

        from publisher import store

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
        self.pub = pub
        self.stop = threading.Event()
        self.engine = store.open_database(pub)
        self.scheduler = BlockingScheduler(timezone=UTC)
        self.mtime = pub.path.stat().st_mtime_ns

    def start(self) -> int:
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self._shutdown)
        self._schedule()
        self.scheduler.add_job(self._reload, "interval", seconds=RELOAD_SECONDS, id="reload")
        self.scheduler.add_job(self._confirmations, "interval", seconds=CONFIRMATIONS_SECONDS,
                               id="confirmations", coalesce=True, max_instances=1)  # fmt: skip
        # Catch-up: whatever was due while we were down (the ledger decides).
        self.scheduler.add_job(self._everything, id="catch-up")
        self.scheduler.start()  # returns after shutdown
        self.engine.dispose()
        log.info("stopped")
        return 0

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
        for digest in pub.config.digests:
            if digest.schedule is not None:
                when = trigger(pub, digest.schedule)
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
                signer(pub),
                lambda: backends_for(pub),
                should_stop=self.stop.is_set,
            )
            _report(tick)

        self._guard(go)

    def _confirmations(self) -> None:
        def go() -> None:
            pub = self.pub
            reports = confirmation.resume(self.engine, pub, signer(pub), self._now(),
                                          lambda: backends_for(pub), self.stop.is_set)  # fmt: skip
            for report in reports:
                log.info("confirmation mails of hour %s: sent %d, deferred %d, failed %d",
                         report.number, report.sent, report.deferred, report.failed)  # fmt: skip

        self._guard(go)

    def _feeds(self) -> None:
        from publisher.build import build

        self._guard(lambda: print_problems(build(self.pub, self._now())))

    def _digest(self, name: str) -> None:
        def go() -> None:
            digest = self.pub.digest(name)
            report = run_digest(self.pub, self.engine, digest, self._now(), signer(self.pub),
                                lambda: backends_for(self.pub), self.stop.is_set)  # fmt: skip
            if report is not None:
                log.info(report.line())

        self._guard(go)

    def _guard(self, work: Any) -> None:
        try:
            work()
        except PublisherError as exc:
            for problem in exc.problems:
                log.error("%s", problem)

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


def plan_command(pub: Publication, args: argparse.Namespace, now: datetime) -> int:
    planned = plan(pub, now, args.days)
    if args.json:
        print(json.dumps([p.as_dict() for p in planned], indent=2))
        return 0
    for item in planned:
        local = item.at.strftime("%a %Y-%m-%d %H:%M %Z")
        utc = item.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        print(f"{local:<28} {utc:<22} {item.job}")
    if not planned:
        print(f"nothing scheduled in the next {args.days} day(s)")
    return 0


def serve(pub: Publication, args: argparse.Namespace, now: datetime) -> int:
    import uvicorn

    from publisher.web import create_app
    from publisher.web.server import server_config

    app = create_app(pub, signer(pub))
    uvicorn.Server(server_config(app, args.host, args.port, pub.config.web)).run()
    return 0
