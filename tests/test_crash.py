"""Kill the sender with SIGKILL at random moments; restart it; nobody is lost.

Bounded: 10 rounds of 300 recipients, each killed up to 4 times before a final run is
let finish. Every recipient must have the issue; the only duplicates are messages sent
and not yet recorded at a kill (at most ``delivery.record_every``), and each carries its
first copy's Message-ID.
"""

from __future__ import annotations

import email
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from publisher import store
from publisher.config import load_config

from .smtpserver import smtp_server

pytestmark = pytest.mark.slow
RECIPIENTS = 300
ROUNDS = 10


def test_sigkill_loses_nobody(example: Path, tmp_path: Path) -> None:
    rng = random.Random(20261128)
    totals = {"kills": 0, "duplicates": 0}
    with smtp_server() as (controller, script):
        for round_number in range(ROUNDS):
            folder = tmp_path / f"round{round_number}"
            folder.mkdir()
            for name in ("articles", "templates"):
                os.symlink(example / name, folder / name)
            every = 1 if round_number % 2 else 10  # messages recorded per transaction
            config = (
                (example / "schedule.yaml")
                .read_text()
                .replace(
                    "backend:\n  type: maildir\n  path: outbox",
                    f"backend:\n  type: smtp\n  host: 127.0.0.1\n  port: {controller.port}\n  tls: none",
                )
                .replace("  hard_bounces: 3\n", f"  hard_bounces: 3\n  record_every: {every}\n")
            )
            (folder / "schedule.yaml").write_text(config)
            pub = load_config(folder / "schedule.yaml")
            engine = store.connect(pub.database_url)
            with engine.begin() as db:
                for n in range(RECIPIENTS):
                    store.add_subscriber(
                        db, f"r{round_number}-{n}@example.org", f"R {n}", "weekly", 0.0
                    )
            engine.dispose()
            start = len(script.received)
            env = {**os.environ, "PUBLISHER_SECRET": "crash-test-secret-0123456789"}
            command = [
                sys.executable,
                "-m",
                "publisher",
                "send",
                "weekly",
                "--now",
                "2026-11-28T12:00:00Z",
            ]
            for _ in range(4):  # killed runs
                process = subprocess.Popen(command, cwd=folder, env=env,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
                time.sleep(rng.uniform(0.2, 2.5))
                if process.poll() is None:
                    process.send_signal(signal.SIGKILL)
                    totals["kills"] += 1
                process.wait(timeout=30)
            done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True,
                                  timeout=120, check=False)  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
            assert "done" in done.stdout or "nothing new" in done.stdout

            got = script.received[start:]
            per_recipient = Counter(recipient for _, recipient, _ in got)
            expected = {f"r{round_number}-{n}@example.org" for n in range(RECIPIENTS)}
            assert set(per_recipient) == expected  # nobody lost, nobody unexpected
            ids: dict[str, set[str]] = defaultdict(set)
            for _, recipient, data in got:
                ids[recipient].add(str(email.message_from_bytes(data)["Message-ID"]))
            assert all(len(found) == 1 for found in ids.values())  # duplicates: same Message-ID
            duplicates = sum(count - 1 for count in per_recipient.values())
            # One connection: at most record_every sent and unrecorded per kill.
            assert duplicates <= 4 * every
            totals["duplicates"] += duplicates
    print(
        f"\n{ROUNDS} rounds x {RECIPIENTS}: {totals['kills']} kills, {totals['duplicates']} duplicates"
    )
