"""`publisher run` as operators use it: two schedulers on one database, a reload of
schedule.yaml (valid and invalid), SIGTERM. Real processes; every wait is bounded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from publisher import store
from publisher.config import load_config

pytestmark = pytest.mark.slow
SECRET = {"PUBLISHER_SECRET": "run-test-secret-0123456789"}


def scheduled(example: Path) -> None:
    """The example digest, due every minute."""
    config = example / "schedule.yaml"
    text = config.read_text()
    assert 'cron: "0 8 * * mon"' in text
    config.write_text(text.replace('cron: "0 8 * * mon"', 'cron: "* * * * *"'))
    pub = load_config(config)
    engine = store.connect(pub.database_url)
    with engine.begin() as db:
        for n in range(20):
            store.add_subscriber(db, f"s{n}@example.org", f"S {n}", "weekly", 0.0)
    engine.dispose()


def start(example: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "publisher", "run"], cwd=example, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **SECRET},
    )  # fmt: skip


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # bounded
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    return process.returncode, err


def delivered(example: Path) -> int:
    folder = example / "outbox" / "new"
    return len(list(folder.iterdir())) if folder.exists() else 0


def test_two_schedulers_one_issue(example: Path) -> None:
    scheduled(example)
    first, second = start(example), start(example)
    try:
        assert wait_for(lambda: delivered(example) >= 20, 60)
        time.sleep(2)  # let the other scheduler try too
    finally:
        codes = [stop(first), stop(second)]
    assert [code for code, _ in codes] == [0, 0], codes
    assert delivered(example) == 20  # each subscriber once
    pub = load_config(example / "schedule.yaml")
    engine = store.connect(pub.database_url)
    with engine.connect() as db:
        count = db.execute(select(func.count()).select_from(store.issues)).scalar_one()
    engine.dispose()
    assert count == 1


def test_reload_valid_and_invalid(example: Path) -> None:
    scheduled(example)
    process = start(example)
    config = example / "schedule.yaml"
    try:
        assert wait_for(lambda: delivered(example) >= 20, 60)
        text = config.read_text()
        config.write_text(text.replace("max_articles: 10", "max_articles: 5"))
        time.sleep(7)  # the reload check runs every 5 s
        lines = text.splitlines()
        bad_line = next(i for i, line in enumerate(lines, 1) if 'cron: "* * * * *"' in line)
        config.write_text(text.replace('cron: "* * * * *"', 'cron: "61 * * * *"'))
        time.sleep(7)
        assert process.poll() is None  # still running on the last good schedule
    finally:
        code, err = stop(process)
    assert code == 0
    assert "schedule.yaml reloaded" in err
    assert "started: schedule.yaml, feeds and 1 scheduled digest(s) (weekly)" in err
    assert "weekly #1 composed: 10 article(s) for 20 recipient(s)" in err
    assert (
        f"schedule.yaml:{bad_line}: digests[0].schedule.cron: minute must be 0-59, not 61 (the last good schedule stays in force)"
        in err
    )
    assert "finishing the messages in flight" in err
    # APScheduler's own INFO lines (two every 5 s) are not the operator's log.
    assert "Adding job tentatively" not in err and "executed successfully" not in err
