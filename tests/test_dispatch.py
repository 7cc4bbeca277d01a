"""What the scheduler knows of the workers' tasks, and who is on duty, on a real SQLite
database; and the workers' configuration errors, as an operator meets them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Connection

from publisher import store
from publisher.store import tasks

from .conftest import Ran
from .smtpserver import Script

SECRET = {"PUBLISHER_SECRET": "dispatch-test-secret-0123456789"}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Connection]:
    engine = store.connect(f"sqlite:///{tmp_path / 'state.db'}")
    with engine.begin() as connection:
        connection.execute(store.issues.insert().values(
            id=1, digest="weekly", number=1, window_end=0.0, created_at=0.0, status="sending",
        ))  # fmt: skip
        yield connection
    engine.dispose()


def test_tasks_the_broker_no_longer_holds_are_placed_again(db: Connection) -> None:
    for number in range(3):
        tasks.placed(db, f"t{number}", 1, 50, 100.0 + number)
    assert tasks.rows_queued(db, 1, 110.0) == 150
    # The broker holds one of them (the newest): the others were just taken by workers
    # that have not recorded their start yet, or lost with a broker that restarted.
    assert tasks.lost(db, 1, 110.0) == 0
    assert tasks.lost(db, 1, 100.5 + tasks.TAKEN_SECONDS) == 1  # the oldest, a while ago
    assert tasks.lost(db, 1, 110.0 + tasks.TAKEN_SECONDS) == 1
    assert tasks.rows_queued(db, 1, 110.0) == 50
    assert tasks.lost(db, 1, 200.0) == 0
    # A started task has claimed its rows: it is not counted as queued.
    tasks.started(db, "t2", 1, 50, "host:1:a", 111.0)
    assert tasks.rows_queued(db, 1, 112.0) == 0
    # A task a lost worker took runs again elsewhere: its later start counts.
    tasks.started(db, "t2", 1, 50, "host:2:b", 113.0)
    tasks.finished(db, "t2", 114.0, {"sent": 40, "deferred": 10})
    seen = tasks.overview(db, 115.0, 0.0)
    assert (seen.queued, seen.running) == (0, 0)
    assert [(w.worker, w.sent, w.deferred, w.busy) for w in seen.workers] == [
        ("host:2:b", 40, 10, 0)
    ]


def test_a_task_no_worker_starts_is_taken_for_lost_after_a_while(db: Connection) -> None:
    tasks.placed(db, "t", 1, 50, 100.0)
    assert tasks.rows_queued(db, 1, 100.0 + tasks.OUT_SECONDS - 1) == 50
    assert tasks.rows_queued(db, 1, 100.0 + tasks.OUT_SECONDS + 1) == 0


def test_a_task_started_unknown_to_this_database_is_recorded(db: Connection) -> None:
    tasks.started(db, "placed-elsewhere", 1, 20, "host:3:c", 50.0)
    tasks.finished(db, "placed-elsewhere", 51.0, {"sent": 20})
    assert tasks.overview(db, 52.0, 0.0).workers[0].sent == 20


def test_one_scheduler_is_on_duty_and_another_takes_over_when_its_lease_ends(
    db: Connection,
) -> None:
    assert tasks.take_duty(db, "scheduler", "a", 100.0, 30.0)
    assert not tasks.take_duty(db, "scheduler", "b", 110.0, 30.0)  # a's lease runs
    assert tasks.take_duty(db, "scheduler", "a", 120.0, 30.0)  # renewed, on duty since 100
    assert tasks.on_duty(db, "scheduler", 121.0) == ("a", 100.0)
    assert not tasks.take_duty(db, "scheduler", "b", 149.0, 30.0)
    assert tasks.take_duty(db, "scheduler", "b", 150.0, 30.0)  # a stopped renewing: b
    assert tasks.on_duty(db, "scheduler", 151.0) == ("b", 150.0)
    assert not tasks.take_duty(db, "scheduler", "a", 160.0, 30.0)  # a is back: standing by
    assert tasks.take_duty(db, "scheduler", "a", 160.0, 30.0, force=True)  # it holds the lock
    tasks.give_up_duty(db, "scheduler", "a")
    assert tasks.on_duty(db, "scheduler", 161.0) is None
    assert tasks.take_duty(db, "scheduler", "b", 161.0, 30.0)


def with_workers(example: Path) -> None:
    config = example / "schedule.yaml"
    config.write_text(config.read_text() + "\nworkers:\n  batch: 100\n")


def test_a_worker_without_its_broker_variable_is_one_line(
    example: Path, cli: Callable[..., Ran]
) -> None:
    with_workers(example)
    ran = cli("worker", cwd=example, env=SECRET, unset=("PUBLISHER_BROKER_URL",))
    assert ran.returncode != 0
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in ran.stderr
    line = (example / "schedule.yaml").read_text().splitlines().index("workers:") + 1
    assert lines[0].startswith(f"schedule.yaml:{line}: workers.broker_url_env: ")
    assert "PUBLISHER_BROKER_URL is not set" in lines[0]


def test_a_worker_without_a_workers_section_is_one_line(
    example: Path, cli: Callable[..., Ran]
) -> None:
    ran = cli("worker", cwd=example, env=SECRET)
    assert ran.returncode != 0
    assert ran.stderr.strip().splitlines() == [
        "schedule.yaml: workers: no workers: section: this publication sends from "
        "`publisher run` itself"
    ]


def test_bad_workers_settings_point_at_their_line(example: Path, cli: Callable[..., Ran]) -> None:
    config = example / "schedule.yaml"
    config.write_text(config.read_text() + "\nworkers:\n  batch: 0\n")
    ran = cli("check", cwd=example, env=SECRET)
    assert ran.returncode != 0
    line = config.read_text().splitlines().index("  batch: 0") + 1
    assert f"schedule.yaml:{line}: workers.batch: " in ran.stderr


class FakeTask:
    """What a Celery task gives its function: its request's id."""

    def __init__(self, task_id: str) -> None:
        self.request = type("Request", (), {"id": task_id})()


def issue_for_a_worker(example: Path, port: int, monkeypatch: pytest.MonkeyPatch) -> int:
    """The example with workers, sending to the test's SMTP server: issue 1 composed, its
    rows due, and this process set up as a worker's; the issue's id."""
    from datetime import UTC, datetime

    from publisher.config import load_config
    from publisher.delivery import open_issue
    from publisher.workers import worker

    from .test_senders import publication

    pub = publication(example, port)
    with_workers(example)
    pub = load_config(pub.path)
    for name, value in SECRET.items():
        monkeypatch.setenv(name, value)
    engine = store.open_database(pub)
    try:
        plan = open_issue(engine, pub, pub.digest("weekly"), datetime(2026, 11, 28, tzinfo=UTC))
    finally:
        engine.dispose()
    assert plan is not None
    monkeypatch.setattr(worker, "_CONFIG", pub.path)
    monkeypatch.setattr(worker, "_PROCESS", None)
    return plan.issue_id


def test_a_task_run_twice_sends_nobody_twice(
    example: Path, server: tuple[int, Script], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task as a worker runs it, on a real SQLite ledger and SMTP server: the claim
    decides, so the same task run again (a lost worker's, given to another) and a task
    too many send only what is still due, each recipient once."""
    from publisher.workers import worker

    from .test_senders import RECIPIENTS, received

    port, script = server
    issue_id = issue_for_a_worker(example, port, monkeypatch)
    try:
        first = worker.deliver_task(FakeTask("t1"), "weekly", issue_id, 200)
        again = worker.deliver_task(FakeTask("t1"), "weekly", issue_id, 200)
        extra = worker.deliver_task(FakeTask("t2"), "weekly", issue_id, 200)
    finally:
        assert worker._PROCESS is not None
        worker._PROCESS.engine.dispose()
    assert (first, again, extra) == ({"sent": 200}, {"sent": RECIPIENTS - 200}, {})
    assert received(script) == Counter({f"r{n}@example.org": 1 for n in range(RECIPIENTS)})


def test_a_worker_keeps_its_smtp_connection_from_one_task_to_the_next(
    example: Path, server: tuple[int, Script], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's tasks share its SMTP session (one EHLO, not one a task); a session the
    server ended while the worker was idle is replaced before the next task's first
    message, which is not lost with it (nobody deferred); the process's end says QUIT."""
    from publisher.workers import worker

    from .test_senders import RECIPIENTS, received

    port, script = server
    issue_id = issue_for_a_worker(example, port, monkeypatch)
    try:
        first = worker.deliver_task(FakeTask("t1"), "weekly", issue_id, 40)
        second = worker.deliver_task(FakeTask("t2"), "weekly", issue_id, 40)
        assert (first, second, script.greetings) == ({"sent": 40}, {"sent": 40}, 1)
        script.hang_up()  # the server ends the idle session
        third = worker.deliver_task(FakeTask("t3"), "weekly", issue_id, 40)
        assert (third, script.greetings) == ({"sent": 40}, 2)
        rest = worker.deliver_task(FakeTask("t4"), "weekly", issue_id, RECIPIENTS)
        assert rest == {"sent": RECIPIENTS - 120}
        assert worker._PROCESS is not None
        backend = worker._PROCESS.sender.backends[0]
        assert getattr(backend, "smtp", None) is not None  # still open after the task
    finally:
        worker._ended()
    assert getattr(backend, "smtp", "gone") is None  # ended with the process
    assert worker._PROCESS is None
    assert received(script) == Counter({f"r{n}@example.org": 1 for n in range(RECIPIENTS)})
