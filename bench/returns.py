"""Benchmark: reading the return mailbox. N delivery status reports (one per recipient of
an issue, each to its VERP address) in a Maildir, read by `fetch_returns`: classified,
acted on (the ledger row failed, the count raised, one transaction each) and moved. The
reference in the same run: flufl.bounce alone reading the same messages (parse and
detect, nothing recorded, nothing moved).

    python3 bench/returns.py [--messages 2000] [--rounds 5] [--work DIR]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-returns-secret-0123456789"

DSN = """\
Delivered-To: {verp}
Return-Path: <>
From: MAILER-DAEMON@mx.kestrelbay.example (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B{n}"

--B{n}
Content-Type: text/plain

This is the mail system at host mx.kestrelbay.example. Your message could not be
delivered to one or more recipients.

--B{n}
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.kestrelbay.example

Final-Recipient: rfc822; {address}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <{address}>: Recipient address rejected: User unknown

--B{n}
Content-Type: text/rfc822-headers

From: news@kestrelbay.example
To: {address}
Subject: Kestrel Bay Notes

--B{n}--
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path("/tmp/publisher-bench-returns"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from publisher import store
    from publisher.config import load_config
    from publisher.returns.read import fetch_returns
    from publisher.returns.verp import envelope_sender
    from publisher.tokens import Signer

    folder = args.work / "example"
    shutil.rmtree(args.work, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copy(ROOT / "schedule.yaml", folder / "schedule.yaml")
    for name in ("articles", "templates"):
        shutil.copytree(ROOT / name, folder / name)
    pub = load_config(folder / "schedule.yaml")
    engine = store.open_database(pub)
    with engine.begin() as db:
        for n in range(args.messages):
            store.add_subscriber(db, f"r{n}@example.org", "", "weekly", 0.0)
    env = {**os.environ, "PUBLISHER_SECRET": SECRET, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "publisher", "send", "weekly", "--now",
                    "2026-11-28T12:00:00Z"], cwd=folder, env=env, check=True,
                   capture_output=True)  # fmt: skip
    signer = Signer([SECRET.encode()])
    with engine.connect() as db:
        people = db.execute(select_people(store)).all()
    messages = [
        DSN.format(n=n, address=address, verp=envelope_sender(
            "bounces@kestrelbay.example", signer, 1, public_id)).encode()
        for n, (address, public_id) in enumerate(people)
    ]  # fmt: skip
    database = pub.state_dir / "publisher.db"
    pristine = args.work / "pristine.db"
    engine.dispose()
    shutil.copy(database, pristine)
    maildir = pub.root / "var" / "returns"

    def ours() -> float:
        shutil.rmtree(maildir, ignore_errors=True)
        for sub in ("new", "cur", "tmp"):
            (maildir / sub).mkdir(parents=True)
        for n, raw in enumerate(messages):
            (maildir / "new" / f"{n}.dsn").write_bytes(raw)
        shutil.copy(pristine, database)
        engine = store.open_database(pub)
        started = time.perf_counter()
        fetched = fetch_returns(engine, pub, signer, 1_800_000_000.0)
        took = time.perf_counter() - started
        engine.dispose()
        assert fetched is not None and fetched.acted["hard"] == len(messages), fetched
        return took

    def reference() -> float:
        import email
        import email.policy

        from flufl.bounce import all_failures

        started = time.perf_counter()
        for raw in messages:
            all_failures(email.message_from_bytes(raw, policy=email.policy.default))
        return time.perf_counter() - started

    ours_times, reference_times = [], []
    for _ in range(args.rounds):  # alternated: both see the same machine
        ours_times.append(ours())
        reference_times.append(reference())
    ours_median = statistics.median(ours_times)
    reference_median = statistics.median(reference_times)
    print(json.dumps({
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}",
        "messages": len(messages),
        "publisher_seconds": {"min": min(ours_times), "median": ours_median,
                              "max": max(ours_times)},
        "flufl_bounce_seconds": {"min": min(reference_times), "median": reference_median,
                                 "max": max(reference_times)},
        "publisher_messages_per_second": round(len(messages) / ours_median),
        "ratio": round(ours_median / reference_median, 2),
    }, indent=2))  # fmt: skip
    return 0


def select_people(store: object) -> object:
    from sqlalchemy import select

    subscribers = store.subscribers  # type: ignore[attr-defined]
    return select(subscribers.c.address, subscribers.c.public_id).order_by(subscribers.c.id)


if __name__ == "__main__":
    raise SystemExit(main())
