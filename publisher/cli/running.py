"""``publisher run`` (the scheduler, or one pass with --once) and ``publisher plan``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, tzinfo

from sqlalchemy.engine import Engine

from publisher import store
from publisher.backends import backend_pool
from publisher.cli.common import print_problems, signer
from publisher.config import Digest, Publication
from publisher.delivery.local import planned_hours, zones_in_use
from publisher.scheduler.daemon import Foreground
from publisher.scheduler.jobs import Tick, run_due
from publisher.scheduler.triggers import Planned, upcoming_runs

log = logging.getLogger("publisher.run")


def _report(tick: Tick, say: Callable[[str], object] = print) -> int:
    """What a pass did: printed by `run --once`, logged by the scheduler."""
    status = 0
    for polled in tick.sources:
        if polled.problem is not None:
            print(polled.problem, file=sys.stderr)
            status = 1
        else:
            say(polled.line())
    for problem in tick.problems:
        print(problem, file=sys.stderr)
        status = 1
    if tick.returns is not None and tick.returns.read:
        for line in tick.returns.lines:
            say(f"  {line}")
        say(tick.returns.line())
    if tick.build is not None:
        print_problems(tick.build)
        changed = sum(f.written for f in tick.build.feeds)
        say(f"feeds: {len(tick.build.feeds)} file(s), {changed} changed")
        if tick.build.site is not None:
            site = tick.build.site
            say(f"site: {site.pages} page(s), {site.written} written")
        status = 1 if tick.build.skipped else status
    for report in tick.digests:
        say(report.line())
        if not report.settled:
            status = 1
    for report in tick.confirmations:  # only those that had something to do
        say(f"confirmation mails of hour {report.number}: sent {report.sent}, deferred "
            f"{report.deferred}, failed {report.failed}, pending {report.pending}")  # fmt: skip
    return status


def run(pub: Publication, args: argparse.Namespace, now: datetime) -> int:
    token_signer = signer(pub)
    if args.once:
        engine = store.open_database(pub)
        try:
            tick = run_due(pub, engine, now, token_signer, lambda: backend_pool(pub))
        finally:
            engine.dispose()
        return _report(tick)
    return Foreground(pub, lambda tick: _report(tick, log.info)).start()


def worker(pub: Publication, args: argparse.Namespace, now: datetime) -> int:
    from publisher.errors import ConfigError, Problem
    from publisher.workers.broker import broker_url
    from publisher.workers.worker import run_worker

    if pub.config.workers is None:
        what = "no workers: section: this publication sends from `publisher run` itself"
        raise ConfigError([Problem(pub.path.name, None, "workers", what)])
    broker_url(pub)  # a missing variable is one line, before Celery starts
    return run_worker(pub)


def plan_command(pub: Publication, args: argparse.Namespace, now: datetime) -> int:
    spread = [d for d in pub.config.digests
              if d.schedule is not None and (d.deliver_at == "local" or d.quiet)]  # fmt: skip
    if not spread:
        planned = upcoming_runs(pub, now, args.days)
    else:  # when their rows fall due depends on the subscribers' zones
        engine = store.open_database(pub)
        try:
            planned = _spread_runs(pub, engine, now, args.days, spread)
        finally:
            engine.dispose()
    if args.json:
        print(json.dumps([p.as_dict() for p in planned], indent=2))
        return 0
    for item in planned:
        local = item.at.strftime("%a %Y-%m-%d %H:%M %Z")
        utc = item.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        job = item.job
        if item.period is not None:
            job += f" (for {item.period.strftime('%a %H:%M')} in each subscriber's zone)"
        print(f"{local:<28} {utc:<22} {job}")
        if item.hours:
            print("    rows falling due, by hour:")
        for count in item.hours:
            hour = count.hour.astimezone(item.at.tzinfo)
            print(f"    {hour.strftime('%a %H:%M %Z'):<24} {count.hour.strftime('%H:%M UTC')}"
                  f"  {count.rows}")  # fmt: skip
    if not planned:
        print(f"nothing scheduled in the next {args.days} day(s)")
    return 0


def _spread_runs(
    pub: Publication, engine: Engine, now: datetime, days: int, spread: list[Digest]
) -> list[Planned]:
    """The runs, and for the next issue of each digest with local or quiet hours, its rows
    by the hour they fall due (the subscribers' zones as they are now)."""

    def zones(digest: Digest) -> list[tzinfo]:
        return zones_in_use(engine, digest, pub.zone_of(digest.schedule))

    planned = upcoming_runs(pub, now, days, zones)
    for digest in spread:
        job = f"digest {digest.name}"
        first = next((n for n, item in enumerate(planned) if item.job == job), None)
        if first is None:
            continue
        item = planned[first]
        own = pub.zone_of(digest.schedule)
        _, hours = planned_hours(engine, digest, item.period or item.at, own)
        planned[first] = replace(item, hours=tuple(hours))
    return planned


def serve(pub: Publication, args: argparse.Namespace, now: datetime) -> int:
    import uvicorn

    from publisher.web import create_app
    from publisher.web.server import listen, server_config

    app = create_app(pub, signer(pub))
    sock = listen(args.host, args.port)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving {pub.path.name} on http://{shown}:{args.port}/ (Ctrl-C stops)",
          file=sys.stderr, flush=True)  # fmt: skip
    try:
        uvicorn.Server(server_config(app, args.host, args.port, pub.config.web)).run(sockets=[sock])
    finally:
        sock.close()
    return 0
