"""The findings of the delivery-core work, each as a test: greylisting costs only its own
retry, a dead server pauses within a minute, a reply about the sender fails nobody, consent
is read when a row is claimed, issues are independent, retries keep their own clock, a
database fault stops the run at once, hard bounces count in a row, and the rate limits
do not depend on thread timing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from publisher import store
from publisher.backends import Backend, load_backend
from publisher.backends.memory import MemoryBackend
from publisher.config import Publication, load_config
from publisher.delivery import open_issue
from publisher.store import ledger

from .conftest import Ran
from .sending import KEY, send
from .smtpserver import Script, free_port
from .test_delivery import NOW, Clock, rows, subscribe


def configure(example: Path, extra: str = "", backend: str | None = None) -> Publication:
    config = example / "schedule.yaml"
    text_ = config.read_text().replace("  hard_bounces: 3\n", f"  hard_bounces: 3\n{extra}")
    if backend is not None:
        text_ = text_.replace("backend:\n  type: maildir\n  path: outbox", backend)
    config.write_text(text_)
    return load_config(config)


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process CLI reads the token secret from the environment."""
    monkeypatch.setenv("PUBLISHER_SECRET", "delivery-faults-secret-0123456789")


def smtp_backend(pub: Publication, port: int) -> Backend:
    options = {"host": "127.0.0.1", "port": port, "tls": "none", "timeout": 2}
    return load_backend("smtp", options, str(pub.root))


@pytest.mark.parametrize("extensions", [(), ("PIPELINING",), ("CHUNKING",)])
def test_greylisting_costs_its_own_retry_and_nothing_else(
    example: Path, server: tuple[int, Script], extensions: tuple[str, ...]
) -> None:
    """Also with the next envelope written behind each message's data (PIPELINING), and
    with BDAT (CHUNKING): a greylisted recipient in the middle of the stream defers only
    that row."""
    port, script = server
    script.extensions = extensions
    pub = configure(example)
    people = [f"{'grey' if n % 50 == 7 else 'r'}{n}@example.org" for n in range(200)]
    subscribe(pub, *people)
    clock = Clock()
    [report] = send(pub, [smtp_backend(pub, port)], NOW, clock, clock.sleep)
    assert clock.slept == []  # a recipient's 4xx slows nobody down
    assert (report.sent, report.deferred, report.status) == (196, 4, "sending")
    grey = {a: v for a, v in rows(pub).items() if a.startswith("grey")}
    assert all(v[:2] == ("deferred", 1) and v[2] == NOW.timestamp() + 300 for v in grey.values())
    # The retry retry_first (5 min) later delivers them: the greylister accepts a return.
    clock.now += 300
    [again] = send(pub, [smtp_backend(pub, port)], NOW, clock, clock.sleep)
    assert (again.sent, again.status) == (200, "done")
    assert Counter(r for _, r, _ in script.received) == Counter({a: 1 for a in people})


def test_a_server_that_cannot_be_reached_pauses_the_issue_within_a_minute(example: Path) -> None:
    from publisher.scheduler.jobs import next_retry

    pub = configure(example)
    subscribe(pub, *(f"r{n}@example.org" for n in range(100)))
    clock = Clock()
    [report] = send(pub, [smtp_backend(pub, free_port())], NOW, clock, clock.sleep)
    assert report.status == "paused" and report.reason is not None
    assert "no connection for" in report.reason and "cannot connect" in report.reason
    assert 60 <= sum(clock.slept) <= 90
    assert report.failed == 0 and report.sent == 0
    states = Counter(status for status, _, _ in rows(pub).values())
    assert states["failed"] == 0 and states["sending"] == 0
    # publisher run tries the paused issue again retry_first (5 min) after its pause, and
    # not before a row of it is due.
    engine = store.connect(pub.database_url)
    with engine.connect() as db:
        paused_at = db.execute(select(store.issues.c.paused_at)).scalar_one()
    assert next_retry(pub, engine) == paused_at + 300
    engine.dispose()


@pytest.mark.parametrize(("where", "reply"), [
    ("mail_reply", "530 5.7.0 Authentication required"),
    ("dot_reply", "554 5.6.0 Message content refused"),
])  # fmt: skip
@pytest.mark.parametrize("extensions", [(), ("PIPELINING",)])
@pytest.mark.usefixtures("secret")
def test_a_reply_about_the_sender_pauses_and_fails_nobody(
    example: Path, server: tuple[int, Script], cli: Callable[..., Ran], where: str, reply: str,
    extensions: tuple[str, ...],
) -> None:  # fmt: skip
    """With PIPELINING the next message's envelope is already accepted when the refusal
    of a message comes: the pause ends that transaction unsent."""
    port, script = server
    script.extensions = extensions
    pub = configure(example, backend=f"backend:\n  type: smtp\n  host: 127.0.0.1\n"
                                     f"  port: {port}\n  tls: none")  # fmt: skip
    subscribe(pub, *(f"r{n}@example.org" for n in range(20)))
    setattr(script, where, reply)
    done = cli("send", "weekly", "--now", "2026-11-28T12:00:00Z", cwd=example)
    assert done.returncode == 1
    assert "paused" in done.stdout and reply.split(" ", 1)[1] in done.stdout
    states = rows(pub)
    assert {status for status, _, _ in states.values()} == {"pending"}  # nobody charged
    engine = store.connect(pub.database_url)
    with engine.connect() as db:
        bounced = db.execute(select(store.subscribers.c.hard_bounces)).scalars().all()
    engine.dispose()
    assert set(bounced) == {0}
    status = cli("status", cwd=example)
    assert "#1 paused (" in status.stdout and reply.split(" ", 1)[1] in status.stdout
    # Once the server takes mail again, the next send finishes the issue.
    setattr(script, where, None)
    again = cli("send", "weekly", "--now", "2026-11-28T12:00:00Z", cwd=example)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(script.received) == 20


def test_someone_who_unsubscribes_during_an_issue_gets_nothing_more(example: Path) -> None:
    pub = configure(example, "  rate: {per_hour: 2}\n")
    subscribe(pub, "a@example.org", "b@example.org", "c@example.org", "d@example.org")
    outbox = MemoryBackend({}, str(pub.root))
    clock = Clock()
    [first] = send(pub, [outbox], NOW, clock, clock.sleep)
    assert first.limited and first.sent == 2
    engine = store.connect(pub.database_url)
    with engine.begin() as db:
        store.remove_subscriber(db, "c@example.org", "weekly", clock.now)
        db.execute(  # suppressed meanwhile (a complaint, say)
            store.subscribers.update()
            .where(store.subscribers.c.address == "d@example.org")
            .values(suppressed_at=clock.now, suppressed_reason="complaint")
        )
    engine.dispose()
    clock.now += 3600
    [second] = send(pub, [outbox], NOW, clock, clock.sleep)
    assert (second.status, second.sent, second.skipped) == ("done", 2, 2)
    assert sorted(e.recipient for e, _ in outbox.outbox) == ["a@example.org", "b@example.org"]


def test_an_unfinished_issue_does_not_hold_back_the_next(example: Path) -> None:
    pub = configure(example)
    subscribe(pub, "a@example.org", "stubborn@example.org")
    outbox = MemoryBackend({"fail": {"stubborn@example.org": "transient"}}, str(pub.root))
    clock = Clock()
    [first] = send(pub, [outbox], NOW, clock, clock.sleep, period=NOW)
    assert (first.number, first.status, first.deferred) == (1, "sending", 1)
    (pub.articles_dir / "new.md").write_text(
        "---\ntitle: Later news\ndate: 2026-11-28T18:00:00Z\n---\nNew.\n"
    )
    day = NOW + timedelta(days=1)  # the next period, well within the row's lifetime
    clock.now = day.timestamp()
    reports = send(pub, [outbox], day, clock, clock.sleep, period=day)
    assert [(r.number, r.status) for r in reports] == [(1, "sending"), (2, "sending")]
    assert [e.recipient for e, _ in outbox.outbox] == ["a@example.org", "a@example.org"]
    engine = store.connect(pub.database_url)
    with engine.connect() as db:
        numbers = db.execute(select(store.issues.c.number, store.issues.c.status)).all()
    engine.dispose()
    assert sorted(tuple(n) for n in numbers) == [(1, "sending"), (2, "sending")]


def test_run_wakes_for_the_earliest_retry_not_the_digests_schedule(example: Path) -> None:
    from publisher.scheduler.daemon import Foreground

    pub = configure(example)
    subscribe(pub, "a@example.org", "later@example.org")
    outbox = MemoryBackend({"fail": {"later@example.org": "transient"}}, str(pub.root))
    clock = Clock()
    send(pub, [outbox], NOW, clock, clock.sleep)
    daemon = Foreground(pub, lambda tick: None)
    daemon._now = lambda: NOW  # type: ignore[method-assign]
    try:
        daemon.plan_retries()
        job = daemon.scheduler.get_job("retries")
        assert job is not None
        assert job.trigger.run_date.timestamp() == NOW.timestamp() + 300  # retry_first
        # A pass stopped by the hour's rate limit does not wake again at once.
        daemon.limited = True
        daemon.plan_retries()
        job = daemon.scheduler.get_job("retries")
        assert job.trigger.run_date.timestamp() == NOW.timestamp() + 300
        daemon._now = lambda: NOW + timedelta(seconds=400)  # type: ignore[method-assign]
        daemon.plan_retries()
        job = daemon.scheduler.get_job("retries")
        assert job.trigger.run_date.timestamp() == NOW.timestamp() + 460
    finally:
        daemon.engine.dispose()
    # And the retry job sends it when its time has come, whatever the weekly cron says.
    from publisher.scheduler.jobs import retry_due

    outbox.failures.clear()
    engine = store.connect(pub.database_url)
    tick = retry_due(pub, engine, NOW, KEY, lambda: [outbox], clock=lambda: clock.now + 300)
    engine.dispose()
    assert [(r.number, r.status, r.sent) for r in tick.digests] == [(1, "done", 2)]


@pytest.mark.usefixtures("secret")
@pytest.mark.parametrize("every", [1, 3, 100])
def test_a_database_fault_stops_the_run_at_once_and_loses_nothing(
    example: Path, server: tuple[int, Script], cli: Callable[..., Ran], every: int
) -> None:
    """Messages are recorded ``record_every`` to a transaction: a fault can leave at most
    that many per connection sent and unrecorded, and only those go out twice."""
    port, script = server
    pub = configure(example, f"  record_every: {every}\n",
                    backend=f"backend:\n  type: smtp\n  host: 127.0.0.1\n"
                            f"  port: {port}\n  tls: none\n  connections: 2")  # fmt: skip
    subscribe(pub, *(f"r{n}@example.org" for n in range(30)))
    engine = store.connect(pub.database_url)
    with engine.begin() as db:
        # A real fault of the real database: recording the fifth message fails.
        db.execute(text(
            "CREATE TRIGGER full_disk BEFORE UPDATE OF status ON deliveries"
            " WHEN NEW.status = 'sent' AND (SELECT count(*) FROM deliveries"
            " WHERE status = 'sent') >= 4 BEGIN SELECT RAISE(ABORT, 'database or disk is full');"
            " END"
        ))  # fmt: skip
    done = cli("send", "weekly", "--now", "2026-11-28T12:00:00Z", cwd=example)
    assert done.returncode == 1
    [line] = [x for x in done.stderr.splitlines() if x.strip()]
    assert "state.database: cannot record deliveries of weekly #1, stopped:" in line
    assert "database or disk is full" in line and "Traceback" not in done.stderr
    handed = len(script.received)
    assert handed <= 4 + every * 2  # recorded, then at most record_every per connection
    with engine.begin() as db:
        db.execute(text("DROP TRIGGER full_disk"))
    engine.dispose()
    again = cli("send", "weekly", "--now", "2026-11-28T12:00:00Z", cwd=example)
    assert again.returncode == 0, again.stdout + again.stderr
    counts = Counter(r for _, r, _ in script.received)
    assert set(counts) == {f"r{n}@example.org" for n in range(30)}  # nobody lost
    assert sum(counts.values()) - 30 <= every * 2  # duplicates: only the unrecorded


def without_returns(example: Path) -> None:
    config = example / "schedule.yaml"
    text_ = config.read_text()
    config.write_text(text_[: text_.index("returns:\n")])


@pytest.mark.parametrize(("returns", "left"), [(False, 0), (True, 2)])
def test_hard_bounces_count_in_a_row(example: Path, returns: bool, left: int) -> None:
    """Without returned mail read, a message accepted is the end of the story: the count
    starts again. With it, the server's 250 is not: the bounce may come an hour later."""
    if not returns:
        without_returns(example)
    pub = configure(example)
    subscribe(pub, "flaky@example.org")
    engine = store.connect(pub.database_url)
    with engine.begin() as db:
        db.execute(store.subscribers.update().values(hard_bounces=2))
    outbox = MemoryBackend({}, str(pub.root))
    clock = Clock()
    [report] = send(pub, [outbox], NOW, clock, clock.sleep)
    assert report.sent == 1
    with engine.connect() as db:
        assert db.execute(select(store.subscribers.c.hard_bounces)).scalar_one() == left
    engine.dispose()


@pytest.mark.parametrize("attempt", range(20))
def test_rate_limits_do_not_depend_on_thread_timing(example: Path, attempt: int) -> None:
    pub = configure(example, "  rate: {per_second: 2, per_hour: 5}\n")
    subscribe(pub, *(f"r{n}@example.org" for n in range(8)))
    outbox = MemoryBackend({}, str(pub.root))
    clock = Clock()
    [report] = send(pub, [outbox], NOW, clock, clock.sleep)
    assert (report.sent, report.pending, report.limited) == (5, 3, True)
    assert clock.slept == [0.5] * 4  # five messages, evenly spaced at two a second
    clock.now += 3600
    [later] = send(pub, [outbox], NOW, clock, clock.sleep)
    assert later.status == "done" and len(outbox.outbox) == 8


@pytest.mark.parametrize("other_sender", [True, False])
def test_the_error_budget_is_shared_by_the_senders_of_an_issue(
    example: Path, other_sender: bool
) -> None:
    """pause_after counts the failures of every sender at work on the issue: with three
    failures of another sender already counted, two more of this one pause it. A sender
    that starts alone starts the count afresh."""
    pub = configure(example, "  pause_after: 5\n")
    people = [f"r{n}@example.org" for n in range(12)]
    subscribe(pub, *people)
    engine = store.connect(pub.database_url)
    digest = pub.config.digests[0]
    plan = open_issue(engine, pub, digest, NOW)
    assert plan is not None
    with engine.begin() as db:
        db.execute(store.issues.update().values(failures_in_a_row=3))
        if other_sender:  # a sender elsewhere holds the last two rows
            ledger.claim(db, plan.issue_id, "elsewhere:1:x", NOW.timestamp(),
                         NOW.timestamp() + 600, 2, "weekly")  # fmt: skip
    engine.dispose()
    failing = {a: "transient" for a in people[:10]}
    clock = Clock()
    [report] = send(pub, [MemoryBackend({"fail": failing}, str(pub.root))], NOW, clock, clock.sleep)
    assert report.status == "paused" and report.reason is not None
    assert report.reason.startswith("5 failures in a row")
    assert report.attempts == (2 if other_sender else 5)
    assert report.sent == 0


@pytest.mark.usefixtures("secret")
def test_send_and_status_say_why_mail_was_deferred_or_refused(
    example: Path, server: tuple[int, Script], cli: Callable[..., Ran]
) -> None:
    port, _ = server
    pub = configure(example, backend=f"backend:\n  type: smtp\n  host: 127.0.0.1\n"
                                     f"  port: {port}\n  tls: none")  # fmt: skip
    subscribe(pub, "tempfail1@example.org", "tempfail2@example.org", "reject1@example.org",
              "ok@example.org")  # fmt: skip
    done = cli("send", "weekly", "--now", "2026-11-28T12:00:00Z", cwd=example)
    assert done.returncode == 1  # two rows wait for their retry
    lines = done.stdout.splitlines()
    assert lines[0].startswith("weekly #1: sending; sent 1, deferred 2, failed 1, pending 0")
    assert lines[1:] == [
        "  2 deferred: delivery (transient): RCPT TO: 451 4.3.0 try again later",
        "  1 failed: delivery (permanent): RCPT TO: 550 5.1.1 no such user",
    ]
    status = cli("status", cwd=example).stdout.splitlines()
    at = status.index(next(line for line in status if line.startswith("  #1 sending:")))
    assert status[at + 1 : at + 3] == [
        "    2 deferred: delivery (transient): RCPT TO: 451 4.3.0 try again later",
        "    1 failed: delivery (permanent): RCPT TO: 550 5.1.1 no such user",
    ]
