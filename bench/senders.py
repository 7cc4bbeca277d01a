"""Benchmark: delivery that holds under real conditions, each figure against a reference
measured in the same run.

    python3 bench/senders.py [--recipients 20000] [--skip-postgres]

Needs Debian's postfix package and, for the PostgreSQL rows, postgresql (and root, to run
both as their own users), as .ci/run installs them. Measures:
* **Greylisting**: `publisher send` of --recipients subscribers into a real Postfix on
  127.0.0.1 (accepted mail discarded after queueing), clean and with 1 % of them
  answered 451 4.3.0 at RCPT, --rounds times each, alternating, each once Postfix's queue
  is empty: the greylisted send's median rate as a ratio of the clean one.
* **Several senders**: 1, 2 and 4 `publisher send` processes started together on one
  database (SQLite, then PostgreSQL), 2 connections each, into smtp-sink: messages per
  second over the wall time until the last one exits, and the ratio to smtp-source
  (one session) in the same run. Every subscriber is checked to have one message.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from send import ENV, NOW, free_port, publication

from tests.postfix import postfix
from tests.postgres import postgres_cluster

SEND = [sys.executable, "-m", "publisher", "send", "weekly", "--now", NOW, "--force"]


def sent_and_waiting(folder: Path) -> tuple[int, int]:
    out = subprocess.run(
        [sys.executable, "-m", "publisher", "status", "--json"], cwd=folder,
        capture_output=True, text=True, check=True, env={**os.environ, **ENV},
    ).stdout  # fmt: skip
    sent = int(re.search(r'"sent": (\d+)', out).group(1))  # type: ignore[union-attr]
    deferred = int(re.search(r'"deferred": (\d+)', out).group(1))  # type: ignore[union-attr]
    return sent, deferred


def senders(folder: Path, count: int) -> float:
    """Wall seconds for ``count`` sender processes started together to finish."""
    start = time.perf_counter()
    processes = [
        subprocess.Popen(
            SEND,
            cwd=folder,
            env={**os.environ, **ENV},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(count)
    ]
    for process in processes:
        _, err = process.communicate(timeout=3600)
        if process.returncode not in (0, 1):
            raise SystemExit(err.decode())
    return time.perf_counter() - start


def use_database(folder: Path, url: str | None) -> None:
    """Point the publication at ``url`` and copy its SQLite list there."""
    if url is None:
        return
    config = folder / "schedule.yaml"
    config.write_text(config.read_text().replace(
        "state:\n  folder: var", f"state:\n  folder: var\n  database: {url}"
    ))  # fmt: skip
    from sqlalchemy import create_engine, text

    from publisher import store

    store.connect(url).dispose()  # the schema
    lite = create_engine(f"sqlite:///{folder / 'var' / 'publisher.db'}")
    target = create_engine(url)
    with lite.connect() as source, target.begin() as db:
        # A fresh ledger for each run: the issues of the run before are gone.
        db.execute(text("TRUNCATE subscribers, issues CASCADE"))  # and all that refers to them
        people = [dict(r._mapping) for r in source.execute(text("SELECT * FROM subscribers"))]
        db.execute(store.subscribers.insert(), people)
        lists = [dict(r._mapping) for r in source.execute(text("SELECT * FROM subscriptions"))]
        db.execute(store.subscriptions.insert(), lists)
    lite.dispose()
    target.dispose()


@contextmanager
def sink(port: int) -> Iterator[None]:
    binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    process = subprocess.Popen([binary, *user, f"127.0.0.1:{port}", "1000"])
    try:
        time.sleep(0.5)
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def greylisting(work: Path, recipients: int, rounds: int) -> tuple[float, float, int]:
    """Median rates of the clean and the greylisted send, in alternating order, each
    started once Postfix has emptied its queue of the one before (its queue manager
    would otherwise compete for the two cores)."""
    import sqlite3
    import statistics

    port = free_port()
    clean: list[float] = []
    grey: list[float] = []
    deferred = 0
    with postfix(port, discard=True) as maildir:
        for number in range(2 * rounds):
            greylisted = number % 2 == 0
            folder = work / f"postfix-{number}"
            publication(folder, port, 2, recipients)
            if greylisted:
                db = sqlite3.connect(folder / "var" / "publisher.db")
                with db:  # every hundredth subscriber is greylisted by Postfix's map
                    db.execute("UPDATE subscribers SET address = 'tempfail-' || address,"
                               " key = 'tempfail-' || key WHERE id % 100 = 50")  # fmt: skip
                db.close()
            _empty_queue(maildir.parent / "etc")
            seconds = senders(folder, 1)
            sent, deferred_now = sent_and_waiting(folder)
            assert sent + deferred_now == recipients
            if greylisted:
                assert deferred_now == recipients // 100, deferred_now
                deferred = deferred_now
                grey.append(sent / seconds)
            else:
                clean.append(sent / seconds)
    return statistics.median(clean), statistics.median(grey), deferred


def _empty_queue(conf: Path) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # bounded: five minutes
        listing = subprocess.run(["postqueue", "-c", str(conf), "-p"], capture_output=True,
                                 text=True, check=False).stdout  # fmt: skip
        if "Mail queue is empty" in listing:
            return
        time.sleep(0.5)


def parallel(work: Path, recipients: int, url: str | None) -> dict[int, float]:
    rates = {}
    port = free_port()
    with sink(port):
        for count in (1, 2, 4):
            folder = work / f"{'pg' if url else 'sqlite'}-{count}"
            publication(folder, port, 2, recipients)
            use_database(folder, url)
            seconds = senders(folder, count)
            sent, _ = sent_and_waiting(folder)
            assert sent == recipients, (count, sent)
            rates[count] = recipients / seconds
    return rates


def source_rate(recipients: int) -> float:
    port = free_port()
    binary = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    with sink(port):
        start = time.perf_counter()
        subprocess.run([binary, "-s", "1", "-m", str(recipients), "-l", "23500",
                        f"127.0.0.1:{port}"], check=True)  # fmt: skip
        return recipients / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="senders-bench-"))
    os.chmod(work, 0o755)
    try:
        clean, grey, deferred = greylisting(work, args.recipients, args.rounds)
        reference = source_rate(args.recipients)
        lite = parallel(work, args.recipients, None)
        pg: dict[int, float] = {}
        if not args.skip_postgres:
            with postgres_cluster() as url:
                pg = parallel(work, args.recipients, url)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}")
    print(
        f"into Postfix, {args.recipients:,} subscribers, 2 connections, median of "
        f"{args.rounds} alternating rounds: clean {clean:,.0f} msgs/s; 1 % greylisted "
        f"({deferred} deferred) {grey:,.0f} msgs/s; ratio {grey / clean:.2f}"
    )
    print(f"smtp-source, 1 session, into smtp-sink: {reference:,.0f} msgs/s")
    for name, rates in (("SQLite", lite), ("PostgreSQL", pg)):
        for count, rate in rates.items():
            print(f"{name}, {count} sender process(es) x 2 connections: {rate:,.0f} msgs/s; "
                  f"ratio {rate / reference:.2f} x smtp-source")  # fmt: skip


if __name__ == "__main__":
    main()
