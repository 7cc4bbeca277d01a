"""Run a command and measure its wall time and the peak memory of its whole process tree.

Peak RSS is the largest *sum* of RSS over the command and all its descendants, sampled
every 10 ms from /proc: a tool that works in several processes is charged for all of them.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Run:
    seconds: float
    peak_rss_mb: float


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _tree_rss(pid: int) -> int:
    total = 0
    stack = [pid]
    seen = 0
    while stack and seen < 10_000:
        current = stack.pop()
        seen += 1
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
        stack.extend(_children(current))
    return total


def run(
    command: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 900
) -> Run:
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    peak = 0
    deadline = start + timeout
    while process.poll() is None:
        peak = max(peak, _tree_rss(process.pid))
        if time.perf_counter() > deadline:
            process.kill()
            raise TimeoutError(f"{command[0]} took longer than {timeout} s")
        time.sleep(0.01)
    seconds = time.perf_counter() - start
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}: {stderr[-2000:]}")
    return Run(seconds, peak / 2**20)


def summary(runs: list[Run]) -> dict[str, float]:
    times = [r.seconds for r in runs]
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "peak_rss_mb": max(r.peak_rss_mb for r in runs),
    }


def fill_list(database: Path, subscribers: int, zones: list[str] | None = None) -> None:
    """``subscribers`` - 1 more active members of the weekly list (a seed member is already
    there), written straight into the SQLite state database; round-robin over ``zones``."""
    db = sqlite3.connect(database)
    names: list[str | None] = list(zones) if zones else [None]
    with db:
        db.executemany(
            "INSERT INTO subscribers (address, key, name, public_id, created_at, hard_bounces,"
            " timezone) VALUES (?, ?, ?, ?, 0, 0, ?)",
            ((f"reader{n}@example.org", f"reader{n}@example.org", f"Reader {n}", f"p{n}",
              names[n % len(names)]) for n in range(subscribers - 1)),
        )  # fmt: skip
        db.execute(
            "INSERT INTO subscriptions (subscriber_id, list, status, updated_at)"
            " SELECT id, 'weekly', 'active', 0 FROM subscribers WHERE key != 'seed@example.org'"
        )
    db.close()
