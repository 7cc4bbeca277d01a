"""Benchmark: `publisher send` into Postfix's smtp-sink, against smtp-source on the same sink.

    python3 bench/send.py [--recipients 20000] [--connections 2] [--big 1000000]

Needs Debian's postfix package (smtp-sink, smtp-source; the mail system itself need not
run). Measures, in one run:
* smtp-source, 1 session, --recipients messages of the digest's size: the ceiling;
* publisher send of the example digest (personalized, ~23 KB) to --recipients subscribers,
  ledger on (one commit per message): messages per second and the ratio to smtp-source;
* peak RSS of publisher send at 10,000 subscribers (the whole issue) and at --big
  subscribers (composing the issue and its ledger rows, then sending for 60 s).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import run

ROOT = Path(__file__).resolve().parent.parent
NOW = "2026-11-28T12:00:00Z"
ENV = {"PUBLISHER_SECRET": "bench-secret-0123456789abcdef"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def publication(folder: Path, port: int, connections: int, subscribers: int) -> None:
    folder.mkdir(parents=True)
    for name in ("articles", "templates"):
        shutil.copytree(ROOT / name, folder / name)
    config = (
        (ROOT / "schedule.yaml")
        .read_text()
        .replace(
            "backend:\n  type: maildir\n  path: outbox",
            f"backend:\n  type: smtp\n  host: 127.0.0.1\n  port: {port}\n  tls: none\n"
            f"  connections: {connections}\n  max_per_connection: 1000000",
        )
    )
    (folder / "schedule.yaml").write_text(config)
    # The list is written straight into the database (the benchmark is about sending).
    seed = ["subscribers", "add", "seed@example.org", "--list", "weekly"]
    subprocess.run([sys.executable, "-m", "publisher", *seed], cwd=folder, check=True)
    db = sqlite3.connect(folder / "var" / "publisher.db")
    with db:
        db.executemany(
            "INSERT INTO subscribers (address, key, name, public_id, created_at, hard_bounces)"
            " VALUES (?, ?, ?, ?, 0, 0)",
            ((f"reader{n}@example.org", f"reader{n}@example.org", f"Reader {n}", f"p{n}")
             for n in range(subscribers - 1)),
        )  # fmt: skip
        db.execute(
            "INSERT INTO subscriptions (subscriber_id, list, status, updated_at)"
            " SELECT id, 'weekly', 'active', 0 FROM subscribers WHERE key != 'seed@example.org'"
        )
    db.close()


def send_rate(folder: Path) -> tuple[float, float, str]:
    command = [sys.executable, "-m", "publisher", "send", "weekly", "--now", NOW]
    result = run(command, folder, env=ENV, timeout=3600)
    out = subprocess.run(
        [sys.executable, "-m", "publisher", "status", "--json"], cwd=folder,
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    sent = int(re.search(r'"sent": (\d+)', out).group(1))  # type: ignore[union-attr]
    return sent / result.seconds, result.peak_rss_mb, f"{sent} sent in {result.seconds:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--big", type=int, default=1_000_000)
    args = parser.parse_args()
    sink_binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    source_binary = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    sink = subprocess.Popen([sink_binary, *user, f"127.0.0.1:{port}", "1000"])
    work = Path(tempfile.mkdtemp(prefix="send-bench-"))
    try:
        time.sleep(0.5)
        size = 23_500
        start = time.perf_counter()
        subprocess.run([source_binary, "-s", "1", "-m", str(args.recipients), "-l", str(size),
                        f"127.0.0.1:{port}"], check=True)  # fmt: skip
        source_rate = args.recipients / (time.perf_counter() - start)

        publication(work / "main", port, args.connections, args.recipients)
        rate, rss, detail = send_rate(work / "main")
        publication(work / "ten", port, args.connections, 10_000)
        _, rss_10k, _ = send_rate(work / "ten")
        publication(work / "big", port, args.connections, args.big)
        big = subprocess.Popen([sys.executable, "-m", "publisher", "send", "weekly", "--now", NOW],
                               cwd=work / "big", env={**os.environ, **ENV})  # fmt: skip
        peak = _watch(big.pid, seconds=60)
        big.send_signal(signal.SIGKILL)
        big.wait()
    finally:
        sink.send_signal(signal.SIGTERM)
        sink.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{args.connections} connection(s); smtp-source messages {size:,} bytes"
    )
    print(f"smtp-source, 1 session: {source_rate:,.0f} msgs/s")
    print(
        f"publisher send, {args.recipients:,} subscribers, ledger on: {rate:,.0f} msgs/s "
        f"({detail}); ratio {rate / source_rate:.2f} x smtp-source; peak RSS {rss:.0f} MB"
    )
    print(
        f"peak RSS: {rss_10k:.0f} MB at 10,000 subscribers, {peak:.0f} MB at {args.big:,} "
        f"(first 60 s: compose + ledger rows + sending); ratio {peak / rss_10k:.2f}"
    )


def _watch(pid: int, seconds: float) -> float:
    from measure import _tree_rss

    peak = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, _tree_rss(pid))
        time.sleep(0.05)
    return peak / 2**20


if __name__ == "__main__":
    main()
