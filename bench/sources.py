"""Benchmark: polling upstream feeds. 200 sources answered 304 Not Modified (requests per
second and CPU per poll), and one fetch of a 500-entry feed (fetch, parse, record), each
against a reference in the same run: the same conditional GETs by urllib3 alone, and the
same feed parsed by feedparser alone.

    python3 bench/sources.py [--sources 200] [--entries 500] [--rounds 5] [--work DIR]

The feeds are served by a small HTTP server in a process of its own on 127.0.0.1, so
that its CPU is not counted as ours.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

SERVER = r"""
import http.server, sys
feeds = {}
def rss(count, tag):
    items = "".join(
        f"<item><guid>urn:{tag}:{n}</guid><title>Entry {n} of {tag}</title>"
        f"<link>https://up.example/{tag}/{n}</link><pubDate>Mon, 02 Nov 2026 10:00:00 GMT</pubDate>"
        f"<description>&lt;p&gt;Paragraph {n} with &lt;a href='/x'&gt;a link&lt;/a&gt; and some "
        f"words to read, as a summary of an entry carries.&lt;/p&gt;</description></item>"
        for n in range(count))
    return ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>U</title>'
            f'<link>https://up.example/</link><description>d</description>{items}</channel></rss>').encode()
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        name = self.path.strip("/")
        if name not in feeds:
            count = int(sys.argv[2]) if name == "big.xml" else 10
            feeds[name] = rss(count, name)
        etag = '"' + name + '"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304); self.send_header("ETag", etag)
            self.send_header("Content-Length", "0"); self.end_headers(); return
        body = feeds[name]
        self.send_response(200); self.send_header("ETag", etag)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args): pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
open(sys.argv[1], "w").write(str(server.server_port))
server.serve_forever()
"""

SITE = """\
site:
  title: Bench
  url: https://bench.example/
  author: Bench
sources:
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sources", type=int, default=200)
    parser.add_argument("--entries", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path(__file__).parent / "out")
    args = parser.parse_args()
    work: Path = args.work.resolve() / "sources"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    port_file = work / "port"
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port_file), str(args.entries)])
    try:
        for _ in range(500):  # bounded: 5 s for the server to start
            if port_file.exists() and port_file.read_text():
                break
            time.sleep(0.01)
        url = f"http://127.0.0.1:{port_file.read_text()}"
        report(measure(work, url, args), args)
    finally:
        server.terminate()
        server.wait(timeout=10)


def measure(work: Path, url: str, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    import feedparser
    import urllib3

    from publisher import store
    from publisher.config import load_config
    from publisher.sources.poll import poll

    lines = "".join(f"  - name: s{n}\n    url: {url}/feed-{n}.xml\n" for n in range(args.sources))
    (work / "schedule.yaml").write_text(SITE + lines)
    pub = load_config(work / "schedule.yaml")
    engine = store.connect(pub.database_url)
    now = 1_790_000_000.0
    poll(pub, engine, now)  # every source once: 200s, ETags recorded
    pool = urllib3.PoolManager(maxsize=1)

    def plain() -> None:  # the reference: the same conditional GETs, nothing else
        for n in range(args.sources):
            headers = {"If-None-Match": f'"feed-{n}.xml"', "User-Agent": "bench"}
            pool.request("GET", f"{url}/feed-{n}.xml", headers=headers)

    ours, reference = [], []
    for number in range(1, args.rounds + 1):
        ours.append(_timed(partial(poll, pub, engine, now + 3600 * number)))
        reference.append(_timed(plain))
    engine.dispose()
    results = {
        f"publisher: poll of {args.sources} sources, all 304": _summary(ours, args.sources),
        f"urllib3 alone: {args.sources} conditional GETs": _summary(reference, args.sources),
    }
    # One fetch of a big feed, every entry new: a fresh database each round.
    body = pool.request("GET", f"{url}/big.xml").data
    big, parse_only = [], []
    for number in range(args.rounds):
        folder = work / f"big-{number}"
        folder.mkdir()
        entry = f"  - name: big\n    url: {url}/big.xml\n    hold_above: 100000\n"
        (folder / "schedule.yaml").write_text(SITE + entry)
        fresh = load_config(folder / "schedule.yaml")
        database = store.connect(fresh.database_url)
        big.append(_timed(partial(poll, fresh, database, now)))
        database.dispose()
        parse_only.append(_timed(partial(feedparser.parse, body)))
    results[f"publisher: fetch, parse and record a {args.entries}-entry feed"] = _summary(big, 1)
    results[f"feedparser alone: parse the same {len(body):,} bytes"] = _summary(parse_only, 1)
    return results


def _timed(work: Callable[[], object]) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - start, time.process_time() - cpu


def _summary(runs: list[tuple[float, float]], requests: int) -> dict[str, float]:
    wall = [w for w, _ in runs]
    cpu = [c for _, c in runs]
    return {
        "median_s": statistics.median(wall), "min_s": min(wall), "max_s": max(wall),
        "cpu_median_s": statistics.median(cpu),
        "per_second": requests / statistics.median(wall),
        "cpu_ms_each": 1000 * statistics.median(cpu) / requests,
    }  # fmt: skip


def report(results: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, {args.rounds} rounds"
    )
    print("| run | median s | min s | max s | CPU s | per second | CPU ms each |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        cells = (r["median_s"], r["min_s"], r["max_s"], r["cpu_median_s"])
        print(
            f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells)
            + f" | {r['per_second']:,.0f} | {r['cpu_ms_each']:.2f} |"
        )  # fmt: skip
    poll, plain, big, parse = (r["median_s"] for r in results.values())
    print(
        f"poll / urllib3 alone: {poll / plain:.2f}; big feed / feedparser alone: {big / parse:.2f}"
    )
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
