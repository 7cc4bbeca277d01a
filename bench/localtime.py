"""Benchmark: composing and queueing a local-time issue (deliver_at: local) against a normal
issue's, for N subscribers spread over Z time zones, on the embedded SQLite database.

Each run is its own process, timed from the inside (the issue chosen, its period's compose
moment found from the subscribers' zones, the issue and its N ledger rows written; then,
apart, every row claimed by 500 at the hours they fall due, as senders claim them) and
measured from the outside (peak RSS of the process). The two kinds alternate, each round
on the same database; the issue a run made is deleted after it, outside the timing.

    python3 bench/localtime.py [--subscribers 1000000] [--zones 400] [--rounds 3] [--work DIR]
                               [--postgres]

With ``--postgres``, the same on a private PostgreSQL cluster on 127.0.0.1 (Debian's
postgresql package, and root to run it as the postgres user); peak RSS is then the
client's alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import fill_list, run

ROOT = Path(__file__).resolve().parent.parent
ENV = {"PUBLISHER_SECRET": "bench-localtime-secret-0123456789"}
PERIOD = "2026-11-30T08:00:00+00:00"  # a Monday 08:00 London: the example's weekly hour
ANCHOR = "      max_lateness: 7d      # ...if it is at most a week late\n"


def publication(folder: Path, subscribers: int, zones: int) -> None:
    """The example publication, as schedule.yaml (once) and local.yaml (deliver_at: local),
    with ``subscribers`` active members of its list, round-robin over ``zones`` zones."""
    sys.path.insert(0, str(ROOT))
    from publisher.subscribers import zone_choices

    folder.mkdir(parents=True)
    for name in ("articles", "templates"):
        shutil.copytree(ROOT / name, folder / name)
    config = (ROOT / "schedule.yaml").read_text()
    assert ANCHOR in config
    (folder / "schedule.yaml").write_text(config)
    (folder / "local.yaml").write_text(config.replace(ANCHOR, ANCHOR + "    deliver_at: local\n"))
    seed = ["subscribers", "add", "seed@example.org", "--list", "weekly"]
    subprocess.run([sys.executable, "-m", "publisher", *seed], cwd=folder, check=True,
                   stdout=subprocess.DEVNULL, env={**os.environ, **ENV})  # fmt: skip
    names = list(zone_choices())[:zones]
    fill_list(folder / "var" / "publisher.db", subscribers, names)
    subprocess.run([sys.executable, "-m", "publisher", "build"], cwd=folder, check=True,
                   stdout=subprocess.DEVNULL, env={**os.environ, **ENV})  # fmt: skip


def queue_once(folder: Path, config: str) -> None:
    """One run (in its own process): what `publisher run` does when the issue's time has
    come, up to the rows written; writes the seconds it took and the rows to run.json."""
    sys.path.insert(0, str(ROOT))
    import functools

    from publisher import store
    from publisher.config import load_config
    from publisher.delivery import open_issue
    from publisher.delivery.local import zones_in_use
    from publisher.localtime import compose_moment

    pub = load_config(folder / config)
    digest = pub.digest("weekly")
    engine = store.open_database(pub)
    period = datetime.fromisoformat(PERIOD)
    started = time.perf_counter()
    now = period
    if digest.deliver_at == "local":  # when it is composed: the first zone's 08:00
        zones = zones_in_use(engine, digest, pub.zone_of(digest.schedule))
        now = functools.partial(compose_moment, zones=zones)(period)
    plan = open_issue(engine, pub, digest, now.astimezone(UTC), period)
    seconds = time.perf_counter() - started
    assert plan is not None
    with engine.begin() as db:
        rows = sum(store.ledger.row_counts(db, plan.issue_id).values())
        hours = [at for at, _ in store.ledger.due_times(db, plan.issue_id, float("inf"))]
    # Then what senders do over the issue's day: claim every row, 500 a claim, at each hour
    # rows fall due (a lease longer than the day: nothing is claimed twice).
    started = time.perf_counter()
    claimed = 0
    for at in sorted(hours):
        for _ in range(rows):
            with engine.begin() as db:
                batch = store.ledger.claim(db, plan.issue_id, "bench", at, at + 864000, 500,
                                           digest.list_name)  # fmt: skip
            if not batch:
                break
            claimed += len(batch)
    claiming = time.perf_counter() - started
    assert claimed == rows
    engine.dispose()
    result = {"seconds": seconds, "claim_seconds": claiming, "rows": rows,
              "due_times": len(hours), "composed": now.astimezone(UTC).isoformat()}  # fmt: skip
    (folder / "run.json").write_text(json.dumps(result))


ISSUE_TABLES = ("deliveries", "issue_articles", "archive", "issues")


def forget_issues(folder: Path, url: str | None) -> None:
    if url is not None:
        import psycopg

        with psycopg.connect(_libpq(url), autocommit=True) as pg:
            pg.execute(f"TRUNCATE {', '.join(ISSUE_TABLES)} CASCADE")
            pg.execute("VACUUM ANALYZE")
        return
    db = sqlite3.connect(folder / "var" / "publisher.db")
    with db:
        for table in ISSUE_TABLES:
            db.execute(f"DELETE FROM {table}")
    db.execute("VACUUM")
    db.close()


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def use_postgres(folder: Path, url: str) -> None:
    """Point both configurations at ``url`` and copy the SQLite list there (COPY)."""
    import psycopg

    from publisher import store

    for name in ("schedule.yaml", "local.yaml"):
        config = folder / name
        config.write_text(config.read_text().replace(
            "state:\n  folder: var", f"state:\n  folder: var\n  database: {url}"
        ))  # fmt: skip
    store.connect(url).dispose()  # the schema
    lite = sqlite3.connect(folder / "var" / "publisher.db")
    with psycopg.connect(_libpq(url)) as pg:
        for table in ("subscribers", "subscriptions"):
            rows = lite.execute(f"SELECT * FROM {table}")
            columns = ", ".join(column[0] for column in rows.description)
            with pg.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        pg.execute("SELECT setval('subscribers_id_seq', (SELECT max(id) FROM subscribers))")
    lite.close()
    forget_issues(folder, url)


def bare_index(folder: Path, subscribers: int, spread: int) -> float:
    """The cause, apart: seconds to write ``subscribers`` rows in subscriber order into a
    bare table with the ledger's two keys, (issue, subscriber) and (issue, status, due),
    the due times taking ``spread`` values interleaved as zones are (1: all the same)."""
    path = folder / f"bare-{spread}.db"
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE rows (issue INTEGER, subscriber INTEGER, status TEXT, due REAL,"
               " PRIMARY KEY (issue, subscriber))")  # fmt: skip
    db.execute("CREATE INDEX rows_due ON rows (issue, status, due)")
    started = time.perf_counter()
    db.execute("BEGIN")
    db.execute(
        "WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x + 1 < ?)"
        " INSERT INTO rows SELECT 1, x, 'pending', x % ? FROM n",
        (subscribers, spread),
    )
    db.execute("COMMIT")
    seconds = time.perf_counter() - started
    db.close()
    path.unlink()
    return seconds


def measured(folder: Path, config: str, url: str | None) -> tuple[dict[str, float], float]:
    """One run in its own process: what it wrote, and its peak RSS (MB)."""
    command = [sys.executable, __file__, "--queue", config, "--work", str(folder)]
    done = run(command, ROOT, env=ENV)
    result = json.loads((folder / "pub" / "run.json").read_text())
    forget_issues(folder / "pub", url)
    return result, done.peak_rss_mb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--zones", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/publisher-bench-localtime"))
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--queue", help=argparse.SUPPRESS)  # one measured run
    args = parser.parse_args()
    if args.queue:
        queue_once(args.work / "pub", args.queue)
        return 0
    if not args.postgres:
        return compare(args, None)
    sys.path.insert(0, str(ROOT))
    from tests.postgres import postgres_cluster

    with postgres_cluster() as url:
        return compare(args, url)


def compare(args: argparse.Namespace, url: str | None) -> int:
    """The two kinds of issue, round after round, on SQLite (``url`` None) or ``url``."""
    shutil.rmtree(args.work, ignore_errors=True)
    folder = args.work / "pub"
    publication(folder, args.subscribers, args.zones)
    if url is not None:
        use_postgres(folder, url)
    times: dict[str, list[float]] = {"schedule.yaml": [], "local.yaml": []}
    claims: dict[str, list[float]] = {"schedule.yaml": [], "local.yaml": []}
    memory: dict[str, list[float]] = {"schedule.yaml": [], "local.yaml": []}
    last: dict[str, dict[str, float]] = {}
    for _ in range(args.rounds):
        for config in times:  # alternating: drift and cache warmth fall on both
            result, peak = measured(args.work, config, url)
            times[config].append(result["seconds"])
            claims[config].append(result["claim_seconds"])
            memory[config].append(peak)
            last[config] = result
    normal, local = (statistics.median(times[c]) for c in times)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{args.subscribers:,} subscribers in {args.zones} zones, {args.rounds} rounds, "
        f"{'PostgreSQL' if url else 'SQLite'}"
    )
    for config, label in (("schedule.yaml", "normal"), ("local.yaml", "local")):
        print(
            f"  {label:>6}: queued in median {statistics.median(times[config]):.2f} s "
            f"(min {min(times[config]):.2f}, max {max(times[config]):.2f}); claimed in "
            f"median {statistics.median(claims[config]):.2f} s (min {min(claims[config]):.2f}, "
            f"max {max(claims[config]):.2f}); peak RSS {max(memory[config]):.0f} MB; "
            f"{last[config]}"
        )
    spread = int(last["local.yaml"]["due_times"])
    one, many = (
        statistics.median(bare_index(args.work, args.subscribers, k) for _ in range(args.rounds))
        for k in (1, spread)
    )
    print(
        f"  bare SQLite table, rows in subscriber order: one due time {one:.2f} s, {spread} "
        f"interleaved {many:.2f} s ({many / one:.2f} x)"
    )
    normal_claims, local_claims = (statistics.median(claims[c]) for c in claims)
    print(
        f"  local / normal: {local / normal:.2f} x queueing time, "
        f"{local_claims / normal_claims:.2f} x claiming time, "
        f"{max(memory['local.yaml']) / max(memory['schedule.yaml']):.2f} x peak RSS"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
