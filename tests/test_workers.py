"""Delivery on Celery workers: a real Redis and a real PostgreSQL on 127.0.0.1, three
`publisher worker` processes, the SMTP server counting messages by envelope recipient.
Every recipient once; a worker killed with SIGKILL mid-batch and a broker restart that
loses every queued task lose nobody, and duplicate only what the killed worker had in
flight, with the same Message-ID."""

from __future__ import annotations

import email
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from publisher import store
from publisher.config import Publication, load_config
from publisher.store import ledger, tasks

from .postgres import needs_postgres, postgres_cluster
from .redis import Redis, needs_redis, redis_server
from .smtpserver import Script
from .test_senders import COMMAND, RECIPIENTS, SECRET, publication, received

WORKERS = 3
BATCH = 50
pytestmark = [pytest.mark.slow, needs_postgres, needs_redis]


def with_workers(pub: Publication, every: int) -> Publication:
    config = pub.path
    config.write_text(
        config.read_text().replace("  record_every: 100\n", f"  record_every: {every}\n")
        + f"\nworkers:\n  batch: {BATCH}\n"
    )
    return load_config(config)


def by_hand(pub: Publication) -> None:
    """The digest without its schedule: sent by hand (the `send` of the test), so the
    scheduler only looks after the issue's rows and tasks."""
    config = pub.path.read_text()
    schedule = config.index("    schedule:\n      cron:")
    pub.path.write_text(config[:schedule] + config[config.index("\n\n", schedule) + 1 :])


def environment(redis: Redis) -> dict[str, str]:
    return {**os.environ, **SECRET, "PUBLISHER_BROKER_URL": redis.url}


@contextmanager
def workers(pub: Publication, redis: Redis, logs: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """``WORKERS`` worker processes (each one process: Celery's solo pool), stopped after."""
    started = []
    for number in range(WORKERS):
        log = (logs / f"worker-{number}.log").open("w")
        started.append(subprocess.Popen(
            [sys.executable, "-m", "publisher", "worker"], cwd=pub.root, env=environment(redis),
            stdout=log, stderr=subprocess.STDOUT, text=True,
        ))  # fmt: skip
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


@contextmanager
def scheduler(pub: Publication, redis: Redis, logs: Path) -> Iterator[subprocess.Popen[str]]:
    """`publisher run`: the scheduler on duty, stopped (SIGTERM, exit 0) after."""
    log = (logs / "scheduler.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "publisher", "run"], cwd=pub.root,
                               env=environment(redis), stdout=log, stderr=subprocess.STDOUT,
                               text=True)  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:  # not one the test killed
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0, (logs / "scheduler.log").read_text()


def dispatch(pub: Publication, redis: Redis) -> str:
    """What the scheduler on duty does: the issue composed if it is new, and tasks placed
    for its due rows that no queued task is for."""
    done = subprocess.run(COMMAND, cwd=pub.root, env=environment(redis), capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def waiting(pub: Publication) -> int:
    engine = store.connect(pub.database_url)
    try:
        with engine.connect() as db:
            counts = ledger.row_counts(db, 1)
    finally:
        engine.dispose()
    return counts.get("pending", 0) + counts.get("sending", 0) + counts.get("deferred", 0)


def until_sent(pub: Publication) -> None:
    """Wait until no row of the issue waits (bounded)."""
    deadline = time.monotonic() + 180
    while waiting(pub) and time.monotonic() < deadline:  # bounded: the deadline
        time.sleep(0.2)
    assert waiting(pub) == 0


def test_three_workers_send_each_recipient_once(
    example: Path, server: tuple[int, Script], tmp_path: Path
) -> None:
    port, script = server
    with postgres_cluster() as url, redis_server() as redis:
        pub = with_workers(publication(example, port, url), every=10)
        script.gate = WORKERS  # the first answers wait until every worker is sending
        with workers(pub, redis, tmp_path):
            [issue] = json.loads(dispatch(pub, redis))["issues"]
            assert (issue["placed"], issue["queued"]) == (RECIPIENTS // BATCH, RECIPIENTS)
            until_sent(pub)
        assert received(script) == Counter({f"r{n}@example.org": 1 for n in range(RECIPIENTS)})
        assert len(script.sessions) >= WORKERS  # each worker its own connections
        engine = store.connect(url)
        with engine.connect() as db:
            seen = tasks.overview(db, time.time(), 0.0)
        engine.dispose()
        assert len(seen.workers) == WORKERS and all(w.sent > 0 for w in seen.workers)
        assert sum(w.sent for w in seen.workers) == RECIPIENTS
        assert (seen.queued, seen.running) == (0, 0)
        shown = subprocess.run([sys.executable, "-m", "publisher", "status", "--json"],
                               cwd=pub.root, env=environment(redis), capture_output=True,
                               text=True, check=True).stdout  # fmt: skip
        workers_shown = json.loads(shown)["workers"]
        assert sorted(w["worker"] for w in workers_shown["workers"]) == sorted(
            w.worker for w in seen.workers
        )
        assert sum(w["sent"] for w in workers_shown["workers"]) == RECIPIENTS
        logged = "".join(p.read_text() for p in tmp_path.glob("worker-*.log"))
        assert logged.count(f"(a batch of {BATCH})") == RECIPIENTS // BATCH  # a line a batch


@pytest.mark.parametrize("seed", [1, 2])
def test_a_killed_worker_and_a_broker_restart_lose_nobody(
    example: Path, server: tuple[int, Script], tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    port, script = server
    every = 5
    with postgres_cluster() as url, redis_server() as redis:
        pub = with_workers(publication(example, port, url), every=every)
        script.gate = WORKERS
        by_hand(pub)
        with workers(pub, redis, tmp_path) as running, scheduler(pub, redis, tmp_path):
            dispatch(pub, redis)
            goal = rng.randrange(30, RECIPIENTS // 2)
            deadline = time.monotonic() + 60
            while len(script.received) < goal and time.monotonic() < deadline:  # bounded
                time.sleep(0.005)
            victim = running[rng.randrange(WORKERS)]
            victim.send_signal(signal.SIGKILL)  # mid-batch: its claims and its task with it
            victim.wait(timeout=30)
            redis.restart()  # no persistence: every task still queued is gone
            # The scheduler on duty gives back the killed worker's rows and places tasks
            # for them at its next look (every 10 s), and for the lost ones once they
            # have been off the queue for TAKEN_SECONDS.
            until_sent(pub)
        counts = received(script)
        assert set(counts) == {f"r{n}@example.org" for n in range(RECIPIENTS)}  # nobody lost
        twice = {address: count for address, count in counts.items() if count > 1}
        # Only the killed worker's messages in flight: sent, not yet recorded.
        assert sum(count - 1 for count in twice.values()) <= every
        ids: dict[str, set[str]] = {}
        for _, recipient, data in script.received:
            ids.setdefault(recipient, set()).add(str(email.message_from_bytes(data)["Message-ID"]))
        assert all(len(ids[address]) == 1 for address in twice)  # the same Message-ID


def test_a_broker_that_is_down_is_one_line_and_loses_nothing(
    example: Path, server: tuple[int, Script], tmp_path: Path
) -> None:
    """`send` with the broker down: exit 1, one line; the issue and every row are kept,
    and the next pass with the broker up places their tasks."""
    port, script = server
    with postgres_cluster() as url, redis_server() as redis:
        pub = with_workers(publication(example, port, url), every=10)
        redis.stop()
        done = subprocess.run(COMMAND, cwd=pub.root, env=environment(redis), capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert done.returncode == 1 and "Traceback" not in done.stderr
        [line] = done.stderr.strip().splitlines()
        assert line.startswith("workers.broker: cannot read the broker's queue: ")
        assert waiting(pub) == RECIPIENTS  # the issue and its rows, all waiting
        redis.start()
        with workers(pub, redis, tmp_path):
            [issue] = json.loads(dispatch(pub, redis))["issues"]
            assert issue["placed"] == RECIPIENTS // BATCH
            until_sent(pub)
        assert received(script) == Counter({f"r{n}@example.org": 1 for n in range(RECIPIENTS)})


def test_the_hourly_limit_holds_across_every_worker(
    example: Path, server: tuple[int, Script], tmp_path: Path
) -> None:
    """`delivery.rate.per_hour` is the publication's, not a worker's: three workers
    claiming side by side send that many in the hour, and the rest waits."""
    port, script = server
    limit = 120
    with postgres_cluster() as url, redis_server() as redis:
        pub = with_workers(publication(example, port, url), every=10)
        pub.path.write_text(pub.path.read_text().replace(
            "  hard_bounces: 3\n", f"  hard_bounces: 3\n  rate:\n    per_hour: {limit}\n"
        ))  # fmt: skip
        script.gate = WORKERS
        with workers(pub, redis, tmp_path):
            dispatch(pub, redis)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # bounded: until every task has run
                engine = store.connect(url)
                with engine.connect() as db:
                    seen = tasks.overview(db, time.time(), 0.0)
                engine.dispose()
                if seen.queued == 0 and seen.running == 0 and seen.workers:
                    break
                time.sleep(0.2)
        assert waiting(pub) == RECIPIENTS - limit  # they wait for the next hour
        assert sum(w.sent for w in seen.workers) == limit  # the ledger's sent rows
        assert len(received(script)) == limit  # and the people who got it
        assert len({w.worker for w in seen.workers if w.sent}) > 1  # side by side
        # Nobody twice either. (Once, a claim counted sent and claimed rows in two
        # statements, and a batch recorded between them was counted in neither: ten more
        # than the limit went out.)
        logged = "".join(p.read_text() for p in tmp_path.glob("worker-*.log"))
        assert len(script.received) == limit, logged


def test_the_standby_scheduler_takes_over_while_workers_send(
    example: Path, server: tuple[int, Script], tmp_path: Path
) -> None:
    """Two schedulers and three workers: the scheduler on duty and a worker are killed
    mid-issue; the standby takes over and places the killed worker's rows again."""
    port, script = server
    with postgres_cluster() as url, redis_server() as redis:
        pub = with_workers(publication(example, port, url), every=5)
        by_hand(pub)
        pub.path.write_text(pub.path.read_text().replace(
            "state:\n  folder: var", "state:\n  folder: var\n  duty_lease: 3s"
        ))  # fmt: skip
        script.gate = WORKERS
        (tmp_path / "first").mkdir()
        (tmp_path / "second").mkdir()
        logs = [tmp_path / "first" / "scheduler.log", tmp_path / "second" / "scheduler.log"]

        def on_duty() -> list[int]:
            return [n for n, log in enumerate(logs) if "on duty: composing" in log.read_text()]

        with workers(pub, redis, tmp_path) as running, \
                scheduler(pub, redis, tmp_path / "first") as first, \
                scheduler(pub, redis, tmp_path / "second") as second:  # fmt: skip
            deadline = time.monotonic() + 60
            while not on_duty() and time.monotonic() < deadline:  # bounded
                time.sleep(0.05)
            [duty] = on_duty()  # one of the two; the other stands by
            dispatch(pub, redis)
            deadline = time.monotonic() + 60
            while len(script.received) < 60 and time.monotonic() < deadline:  # bounded
                time.sleep(0.005)
            running[0].send_signal(signal.SIGKILL)
            running[0].wait(timeout=30)
            killed = (first, second)[duty]
            killed.send_signal(signal.SIGKILL)
            killed.wait(timeout=30)
            until_sent(pub)
            assert on_duty() == [0, 1]  # the standby took over
        counts = received(script)
        assert set(counts) == {f"r{n}@example.org": 1 for n in range(RECIPIENTS)}.keys()
        assert sum(count - 1 for count in counts.values()) <= 5  # the killed worker's
