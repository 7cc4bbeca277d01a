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


def idle_in_a_transaction(url: str) -> int:
    """Connections to the database left idle inside a transaction begun over 1.5 s ago
    (they hold back PostgreSQL's vacuum for as long as they stay); a job's own short
    transaction, caught between two statements, is not one."""
    from sqlalchemy import text

    engine = store.connect(url)
    try:
        with engine.connect() as db:
            found = db.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'"
                " AND xact_start < now() - interval '1.5 seconds'"
            )).scalar_one()  # fmt: skip
    finally:
        engine.dispose()
    return int(found)


def on_duty_lines(log: Path) -> list[str]:
    # Not merely "on duty": the upgrade's log quotes migration 0008, which says it too.
    return [line for line in log.read_text().splitlines() if "on duty: composing" in line]


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_one_scheduler_on_duty_and_the_standby_takes_over_when_it_is_killed(
    example: Path, tmp_path: Path, database: str
) -> None:
    """Two `publisher run`: the first is on duty, the second stands by and does nothing;
    killed with SIGKILL, the first is replaced within the lease and one look more."""
    from contextlib import ExitStack

    from publisher.scheduler.duty import ROLE
    from publisher.store.tasks import on_duty

    from .postgres import BINARIES, postgres_cluster

    with ExitStack() as stack:
        config = example / "schedule.yaml"
        text = config.read_text().replace("state:\n  folder: var",
                                          "state:\n  folder: var\n  duty_lease: 3s")  # fmt: skip
        if database == "postgres":
            if not BINARIES or os.geteuid() != 0:
                pytest.skip("needs Debian's postgresql and root")
            url = stack.enter_context(postgres_cluster())
            text = text.replace("  duty_lease: 3s", f"  duty_lease: 3s\n  database: {url}")
        config.write_text(text)
        pub = load_config(config)
        logs = [tmp_path / "first.log", tmp_path / "second.log"]

        def started(log: Path) -> subprocess.Popen[str]:
            return subprocess.Popen(
                [sys.executable, "-m", "publisher", "run"], cwd=example, text=True,
                stdout=subprocess.DEVNULL, stderr=log.open("w"), env={**os.environ, **SECRET},
            )  # fmt: skip

        def holder() -> str | None:
            engine = store.connect(pub.database_url)
            try:
                with engine.connect() as db:
                    found = on_duty(db, ROLE, time.time())
            finally:
                engine.dispose()
            return None if found is None else found[0]

        first = started(logs[0])
        try:
            assert wait_for(lambda: bool(on_duty_lines(logs[0])), 60)
            upgrade = logs[0].read_text()  # the new database's upgrade, as the operator sees it
            assert "Running upgrade 0007 -> 0008" in upgrade and "setup plugin" not in upgrade
            was = holder()
            assert was is not None and f":{first.pid}:" in was
            second = started(logs[1])
            try:
                assert wait_for(lambda: "standing by" in logs[1].read_text(), 60)
                assert f":{first.pid}:" in logs[1].read_text()  # it names the one on duty
                time.sleep(2)  # a look or two more: still standing by
                assert "on duty: composing" not in logs[1].read_text()
                if database == "postgres":  # the lock's connection, between its looks
                    assert idle_in_a_transaction(pub.database_url) == 0
                first.send_signal(signal.SIGKILL)
                first.wait(timeout=30)
                # Within the lease (3 s) and a look (1 s); a margin for a loaded machine.
                assert wait_for(lambda: "on duty: composing" in logs[1].read_text(), 20)
                now = holder()
                assert now is not None and f":{second.pid}:" in now
            finally:
                code, err = stop(second)
            assert code == 0, err
        finally:
            if first.poll() is None:
                first.kill()
                first.wait(timeout=30)
        assert holder() is None  # a clean stop leaves duty at once
