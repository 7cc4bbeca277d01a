"""Benchmark: delivery on Celery workers into Postfix's smtp-sink, against the
single-process send and smtp-source in the same run.

    python3 bench/workers.py [--recipients 20000] [--rounds 3] [--skip-postgres]

Needs Debian's postfix (smtp-sink, smtp-source), redis-server and, for the PostgreSQL
rows, postgresql (and root), as .ci/run installs them. For each database (SQLite, then
PostgreSQL) and each round, interleaved:

* **smtp-source** ``-s 1`` with messages of the digest's size: the reference;
* **one process**: `publisher send` of --recipients subscribers, 2 connections, no
  workers (what one machine does without a broker);
* **1, 2 and 4 workers**: `publisher worker` processes (2 connections each) already
  running, then `publisher send` places the tasks (batches of 500) and the workers send
  them. Timed from the `send` that places them to the last row recorded.

Reported: messages per second (median of the rounds), each as a ratio of smtp-source and
of the one-process send; the time `send` takes to place the tasks; and the queue's cost
per message: one worker's seconds per message less the one-process send's. Every run is
checked: each subscriber has exactly one `sent` row.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from send import ENV, free_port, publication
from senders import SEND, sent_and_waiting, sink, source_rate, use_database

from tests.postgres import postgres_cluster
from tests.redis import redis_server

COUNTS = (1, 2, 4)
READY_SECONDS = 5.0  # a worker connects to the broker and waits for tasks by then


@contextmanager
def workers(folder: Path, count: int, broker: str) -> Iterator[None]:
    env = {**os.environ, **ENV, "PUBLISHER_BROKER_URL": broker}
    started = [
        subprocess.Popen([sys.executable, "-m", "publisher", "worker"], cwd=folder, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(count)
    ]  # fmt: skip
    try:
        time.sleep(READY_SECONDS)
        yield
    finally:
        for process in started:
            process.send_signal(signal.SIGTERM)
        for process in started:
            process.wait(timeout=120)


def one_run(folder: Path, broker: str | None, recipients: int) -> tuple[float, float]:
    """Seconds from the `send` to the last row recorded, and the `send`'s own seconds."""
    env = {**os.environ, **ENV}
    if broker is not None:
        env["PUBLISHER_BROKER_URL"] = broker
    start = time.perf_counter()
    done = subprocess.run(SEND, cwd=folder, env=env, capture_output=True, text=True,
                          timeout=3600)  # fmt: skip
    placed = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(done.stderr)
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:  # bounded: an hour
        sent, _ = sent_and_waiting(folder)
        if sent == recipients:
            break
        time.sleep(0.1)
    else:
        raise SystemExit(f"{folder.name}: not every row was sent")
    return time.perf_counter() - start, placed


def with_workers(folder: Path) -> None:
    config = folder / "schedule.yaml"
    config.write_text(config.read_text() + "\nworkers:\n  batch: 500\n")


def one_each(db_file: Path | None) -> None:
    """Exactly one sent row per subscriber (SQLite; PostgreSQL is checked by counts)."""
    if db_file is None:
        return
    db = sqlite3.connect(db_file)
    twice = db.execute("SELECT count(*) FROM (SELECT subscriber_id FROM deliveries"
                       " WHERE status = 'sent' GROUP BY subscriber_id HAVING count(*) > 1)"
                       ).fetchone()[0]  # fmt: skip
    db.close()
    assert twice == 0


def measure(work: Path, recipients: int, rounds: int, url: str | None,
            broker: str) -> dict[str, list[float]]:  # fmt: skip
    found: dict[str, list[float]] = {}
    port = free_port()
    name = "pg" if url else "sqlite"
    with sink(port):
        for number in range(rounds):
            found.setdefault("smtp-source", []).append(source_rate(recipients))
            folder = work / f"{name}-{number}-single"
            publication(folder, port, 2, recipients)
            use_database(folder, url)
            seconds, _ = one_run(folder, None, recipients)
            found.setdefault("one process", []).append(recipients / seconds)
            for count in COUNTS:
                folder = work / f"{name}-{number}-{count}"
                publication(folder, port, 2, recipients)
                use_database(folder, url)
                with_workers(folder)
                with workers(folder, count, broker):
                    seconds, placed = one_run(folder, broker, recipients)
                one_each(None if url else folder / "var" / "publisher.db")
                found.setdefault(f"{count} worker(s)", []).append(recipients / seconds)
                found.setdefault(f"placing, {count} worker(s)", []).append(placed)
                shutil.rmtree(folder, ignore_errors=True)
    return found


def report(title: str, found: dict[str, list[float]], recipients: int) -> None:
    median = {key: statistics.median(values) for key, values in found.items()}
    source, single = median["smtp-source"], median["one process"]
    print(f"{title}, {recipients:,} subscribers, 2 connections a process, median of "
          f"{len(found['smtp-source'])} rounds:")  # fmt: skip
    print(f"  smtp-source -s 1: {source:,.0f} msgs/s")
    print(f"  one process (no workers): {single:,.0f} msgs/s, {single / source:.2f} x smtp-source")
    for count in COUNTS:
        rate = median[f"{count} worker(s)"]
        placing = median[f"placing, {count} worker(s)"]
        print(f"  {count} worker(s): {rate:,.0f} msgs/s, {rate / source:.2f} x smtp-source, "
              f"{rate / single:.2f} x one process; placing the tasks: {placing:.2f} s")  # fmt: skip
    cost = 1 / median["1 worker(s)"] - 1 / single
    print(f"  the queue's cost per message (1 worker against one process): {cost * 1e6:,.0f} µs",
          flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="workers-bench-"))
    os.chmod(work, 0o755)
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}", flush=True)
    try:
        with redis_server() as redis:
            report("SQLite", measure(work, args.recipients, args.rounds, None, redis.url),
                   args.recipients)  # fmt: skip
            if not args.skip_postgres:
                with postgres_cluster() as url:
                    found = measure(work, args.recipients, args.rounds, url, redis.url)
                report("PostgreSQL", found, args.recipients)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
