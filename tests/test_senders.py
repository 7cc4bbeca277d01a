"""Several sender processes on one database: every recipient once, counted by envelope
recipient at the SMTP server; a sender killed with SIGKILL loses nobody and duplicates at
most what it had in flight (one message per connection)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from publisher import store
from publisher.config import Publication, load_config

from .postgres import needs_postgres
from .smtpserver import Script

RECIPIENTS = 300
SENDERS = 3
SECRET = {"PUBLISHER_SECRET": "senders-test-secret-0123456789"}
COMMAND = [sys.executable, "-m", "publisher", "send", "weekly", "--now", "2026-11-28T12:00:00Z",
           "--json"]  # fmt: skip


def publication(
    example: Path, port: int, database: str | None = None, every: int = 100
) -> Publication:
    """The example sending to the test's SMTP server with one connection, recording
    ``every`` messages to a transaction, its list of ``RECIPIENTS`` subscribers written
    before any sender starts."""
    config = example / "schedule.yaml"
    text = (
        config.read_text()
        .replace(
            "backend:\n  type: maildir\n  path: outbox",
            f"backend:\n  type: smtp\n  host: 127.0.0.1\n  port: {port}\n  tls: none\n  connections: 1",
        )
        .replace("  hard_bounces: 3\n", f"  hard_bounces: 3\n  record_every: {every}\n")
    )
    if database is not None:
        text = text.replace(
            "state:\n  folder: var", f"state:\n  folder: var\n  database: {database}"
        )
    config.write_text(text)
    pub = load_config(config)
    engine = store.connect(pub.database_url)
    with engine.begin() as db:
        for n in range(RECIPIENTS):
            store.add_subscriber(db, f"r{n}@example.org", f"R {n}", "weekly", 0.0)
    engine.dispose()
    return pub


def start(pub: Publication) -> subprocess.Popen[str]:
    return subprocess.Popen(COMMAND, cwd=pub.root, env={**os.environ, **SECRET},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def attempts(process: subprocess.Popen[str]) -> int:
    """How many messages that sender process handed to the server (its own report)."""
    out, err = process.communicate(timeout=120)
    assert process.returncode in (0, 1), err
    return sum(issue["attempts"] for issue in json.loads(out)["issues"])


def received(script: Script) -> Counter[str]:
    return Counter(recipient for _, recipient, _ in script.received)


def everyone_once(pub: Publication, script: Script) -> None:
    script.gate = SENDERS  # the first answers wait until every sender is sending
    senders = [start(pub) for _ in range(SENDERS)]
    handed = [attempts(p) for p in senders]
    assert all(count > 0 for count in handed), handed  # they really sent side by side
    assert sum(handed) == RECIPIENTS
    assert received(script) == Counter({f"r{n}@example.org": 1 for n in range(RECIPIENTS)})


def killed_sender_loses_nobody(pub: Publication, script: Script, seed: int) -> int:
    """Kill one of the senders at a random moment; the others and one more run finish.
    Returns the duplicates, which must be no more than the killed one had sent and not
    recorded: ``record_every`` on its one connection."""
    rng = random.Random(seed)
    script.gate = SENDERS
    senders = [start(pub) for _ in range(SENDERS)]
    victim = senders[rng.randrange(SENDERS)]
    goal = rng.randrange(20, RECIPIENTS - 50)
    deadline = time.monotonic() + 60
    while len(script.received) < goal and time.monotonic() < deadline:  # bounded
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    for process in senders:
        if process is not victim:
            attempts(process)
    # A run after the kill: the dead sender's rows are given back at once (same machine).
    last = start(pub)
    attempts(last)
    counts = received(script)
    assert set(counts) == {f"r{n}@example.org" for n in range(RECIPIENTS)}  # nobody lost
    duplicates = sum(count - 1 for count in counts.values())
    assert duplicates <= pub.config.delivery.record_every
    return duplicates


def test_three_senders_on_sqlite_send_each_recipient_once(
    example: Path, server: tuple[int, Script]
) -> None:
    port, script = server
    everyone_once(publication(example, port), script)


def test_one_send_with_two_processes_sends_each_recipient_once(
    example: Path, server: tuple[int, Script]
) -> None:
    """``delivery.processes: 2``: `publisher send` starts a second sending process; both
    send the issue at once (two sessions at the server), each recipient once."""
    port, script = server
    pub = publication(example, port)
    config = pub.path
    config.write_text(
        config.read_text()
        .replace("  hard_bounces: 3\n", "  hard_bounces: 3\n  processes: 2\n")
        .replace("  connections: 1", "  connections: 1\n  max_per_connection: 1000")
    )
    script.gate = 2  # the first answers wait until both processes are sending
    process = start(pub)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    [issue] = json.loads(out)["issues"]
    assert (issue["status"], issue["sent"], issue["pending"]) == ("done", RECIPIENTS, 0)
    assert len(script.sessions) == 2  # one session each: both processes sent
    assert received(script) == Counter({f"r{n}@example.org": 1 for n in range(RECIPIENTS)})


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "every"), [(1, 1), (2, 1), (3, 20), (4, 20)])
def test_a_killed_sender_on_sqlite_loses_nobody(
    example: Path, server: tuple[int, Script], seed: int, every: int
) -> None:
    port, script = server
    if every > 1:  # and each message's data written with the next envelope
        script.extensions = ("PIPELINING",)
    killed_sender_loses_nobody(publication(example, port, every=every), script, seed)


@pytest.mark.slow
@needs_postgres
def test_three_senders_on_postgres_send_each_recipient_once(
    example: Path, server: tuple[int, Script], postgres_url: str
) -> None:
    port, script = server
    everyone_once(publication(example, port, postgres_url), script)


@pytest.mark.slow
@needs_postgres
def test_a_killed_sender_on_postgres_loses_nobody(
    example: Path, server: tuple[int, Script], postgres_url: str
) -> None:
    port, script = server
    killed_sender_loses_nobody(publication(example, port, postgres_url, every=5), script, 4)


# One `publisher run` pass at a moment, in a process of its own, on a clock held at that
# moment (the rows' hours are the moment's, not this machine's).
PASS = """
import sys
from datetime import datetime
from pathlib import Path
from publisher import store
from publisher.backends import backend_pool
from publisher.cli.common import signer
from publisher.config import load_config
from publisher.scheduler.jobs import run_due

pub = load_config(Path(sys.argv[1]))
now = datetime.fromisoformat(sys.argv[2])
engine = store.open_database(pub)
run_due(pub, engine, now, signer(pub), lambda: backend_pool(pub), build_feeds=False,
        clock=now.timestamp)
engine.dispose()
"""


def test_three_schedulers_send_a_local_time_issue_each_recipient_once_at_their_hour(
    example: Path, server: tuple[int, Script]
) -> None:
    """`deliver_at: local`: three scheduler passes in three processes at once, at each
    zone's Monday 08:00: one issue, and each recipient's copy once, in the passes at their
    own hour."""
    port, script = server
    pub = publication(example, port)
    anchor = "      max_lateness: 7d      # ...if it is at most a week late\n"
    pub.path.write_text(pub.path.read_text().replace(anchor, anchor + "    deliver_at: local\n"))
    zones = {
        "Asia/Tokyo": "2026-11-29T23:00:00+00:00",
        "Europe/Berlin": "2026-11-30T07:00:00+00:00",
        "America/New_York": "2026-11-30T13:00:00+00:00",
    }  # Monday 08:00 in each
    engine = store.connect(pub.database_url)
    with engine.begin() as db:
        for n, member in enumerate(store.members(db, "weekly")):
            store.set_zone(db, member.public_id, list(zones)[n % len(zones)])
    engine.dispose()
    arrived: dict[str, str] = {}
    for zone, moment in zones.items():
        before = len(script.received)
        passes = [
            subprocess.Popen([sys.executable, "-c", PASS, str(pub.path), moment],
                             cwd=pub.root, env={**os.environ, **SECRET},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(SENDERS)
        ]  # fmt: skip
        for process in passes:
            _, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
        arrived.update({rcpt: zone for _, rcpt, _ in script.received[before:]})
    assert received(script) == Counter({f"r{n}@example.org": 1 for n in range(RECIPIENTS)})
    assert arrived == {f"r{n}@example.org": list(zones)[n % len(zones)] for n in range(RECIPIENTS)}
    engine = store.connect(pub.database_url)
    with engine.connect() as db:
        issues = [(row.number, row.status) for row in db.execute(store.issues.select())]
    engine.dispose()
    assert issues == [(1, "done")]  # composed once, by one of the three
