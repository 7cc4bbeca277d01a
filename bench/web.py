"""Benchmark: the web side under load from a second process, on 127.0.0.1.

    python3 bench/web.py [--posts 1000] [--seconds 10]

Starts `publisher serve` (uvicorn, one worker) on the example publication with --posts
subscribers, then from this process: --posts one-click unsubscribe POSTs, one after another
(latency p50/p99), conditional GETs of the main RSS feed answered 304, on two
persistent connections for --seconds (requests per second), and 200 GETs of a sent
issue's archive page (latency p50/p99).

Then the sign-up limit that several `serve` processes share, in this process: --checks
sign-ups from as many client addresses through the limit counted in the state database
(SQLite, and a private PostgreSQL cluster when Debian's postgresql and root are there),
against the same limit counted in memory only: microseconds a sign-up, and the ratio.
A sign-up's answer waits for a fixed floor, so its latency over HTTP would not show it.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-web-secret-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--checks", type=int, default=5000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="web-bench-"))
    env = {**os.environ, "PUBLISHER_SECRET": SECRET}
    try:
        for name in ("articles", "templates", "schedule.yaml"):
            source = ROOT / name
            (shutil.copytree if source.is_dir() else shutil.copy)(source, work / name)
        run = [sys.executable, "-m", "publisher"]
        subprocess.run([*run, "build"], cwd=work, check=True, capture_output=True)
        seed = ["subscribers", "add", "seed@example.org", "--list", "weekly"]
        subprocess.run([*run, *seed], cwd=work, check=True, capture_output=True)
        db = sqlite3.connect(work / "var" / "publisher.db")
        with db:
            db.executemany(
                "INSERT INTO subscribers (address, key, name, public_id, created_at, hard_bounces)"
                " VALUES (?, ?, '', ?, 0, 0)",
                ((f"r{n}@example.org", f"r{n}@example.org", f"p{n}") for n in range(args.posts)),
            )
            db.execute(
                "INSERT INTO subscriptions (subscriber_id, list, status, updated_at)"
                " SELECT id, 'weekly', 'active', 0 FROM subscribers"
                " WHERE key != 'seed@example.org'"
            )
        db.close()
        sys.path.insert(0, str(ROOT))
        from publisher.tokens import UNSUBSCRIBE, Signer

        signer = Signer([SECRET.encode()])
        # Issue 1 goes out (into the example's Maildir outbox), so the archive has a page.
        send = [*run, "send", "weekly", "--now", "2026-11-28T12:00:00Z"]
        subprocess.run(send, cwd=work, env=env, check=True, capture_output=True)
        port = free_port()
        server = subprocess.Popen([*run, "serve", "--port", str(port)], cwd=work, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    time.sleep(0.1)
            latencies = unsubscribe(
                port, [signer.sign(UNSUBSCRIBE, f"p{n}") for n in range(args.posts)]
            )
            rate = not_modified(port, args.seconds)
            pages = [get(port, "/issues/weekly/1/") for _ in range(200)]
        finally:
            server.terminate()
            server.wait(timeout=30)
        left = (
            sqlite3.connect(work / "var" / "publisher.db")
            .execute("SELECT count(*) FROM subscriptions WHERE status = 'active'")
            .fetchone()[0]
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"one-click unsubscribe POST, {len(latencies)} sequential: p50 {p50:.1f} ms, "
          f"p99 {p99:.1f} ms; active subscriptions left: {left - 1} of {args.posts}")  # fmt: skip
    print(f"conditional GET answered 304, 2 keep-alive connections: {rate:,.0f} requests/s")
    pages.sort()
    print(f"archive page of a sent issue, {len(pages)} sequential: p50 "
          f"{statistics.median(pages) * 1000:.1f} ms, p99 {pages[-2] * 1000:.1f} ms")  # fmt: skip
    shared_limit(args.checks, p50 / 1000)


def shared_limit(checks: int, post: float) -> None:
    """The shared sign-up limit's cost a sign-up, against the in-memory limit (medians of
    three passes, interleaved) and the unsubscribe POST's p50 (``post``, seconds), on each
    database there is."""
    sys.path.insert(0, str(ROOT))
    from tests.postgres import BINARIES, postgres_cluster

    work = Path(tempfile.mkdtemp(prefix="web-limit-bench-"))
    try:
        limit_cost("SQLite", f"sqlite:///{work / 'state.db'}", checks, post)
        if BINARIES and os.geteuid() == 0:
            with postgres_cluster() as url:
                limit_cost("PostgreSQL", url, checks, post)
        else:
            print("sign-up limit on PostgreSQL: skipped (needs Debian's postgresql and root)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def limit_cost(title: str, url: str, checks: int, post: float) -> None:
    from publisher import store
    from publisher.store.migrate import migrate
    from publisher.web.limits import RateLimit, SharedRateLimit

    engine = store.connect(url)
    migrate(engine)
    found: dict[str, list[float]] = {"memory": [], "shared": []}
    try:
        for round_ in range(3):
            clients = [f"10.{round_}.{n // 250}.{n % 250}" for n in range(checks)]
            for kind, limit in (("memory", RateLimit()),
                                ("shared", SharedRateLimit(engine, f"bench{round_}"))):  # fmt: skip
                start = time.perf_counter()
                allowed = sum(limit.allow(client) for client in clients)
                found[kind].append((time.perf_counter() - start) / checks)
                assert allowed == checks, (kind, allowed)
    finally:
        engine.dispose()
    memory, shared = (statistics.median(found[kind]) for kind in ("memory", "shared"))
    print(f"sign-up limit on {title}, {checks} clients: in memory {memory * 1e6:.1f} µs, "
          f"shared {shared * 1e6:.0f} µs a sign-up ({shared / memory:,.0f} ×; "
          f"{shared / post:.2f} × an unsubscribe POST's p50)")  # fmt: skip


def get(port: int, path: str) -> float:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    start = time.perf_counter()
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    took = time.perf_counter() - start
    assert response.status == 200 and b"Kestrel" in body, response.status
    connection.close()
    return took


def unsubscribe(port: int, tokens: list[str]) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    found = []
    for token in tokens:
        start = time.perf_counter()
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        body = b"List-Unsubscribe=One-Click"
        connection.request("POST", f"/unsubscribe/{token}", body=body, headers=form)
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
        found.append(time.perf_counter() - start)
    connection.close()
    return found


def not_modified(port: int, seconds: float) -> float:
    first = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    first.request("GET", "/feeds/rss.xml")
    response = first.getresponse()
    response.read()
    etag = response.getheader("ETag") or ""
    first.close()
    counts = [0, 0]

    def hammer(slot: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            connection.request("GET", "/feeds/rss.xml", headers={"If-None-Match": etag})
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 304
            counts[slot] += 1
        connection.close()

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / seconds


if __name__ == "__main__":
    main()
