"""The ledger: every recipient once, retries by the rules, nothing marked done too early."""

from __future__ import annotations

import email
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import select

from publisher import store
from publisher.backends import Backend, load_backend
from publisher.backends.memory import MemoryBackend
from publisher.config import Publication, load_config
from publisher.delivery import RunReport, open_issue

from .sending import send
from .smtpserver import Script, smtp_server

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class Clock:
    """Time that moves only when the code under test sleeps (or the test says so)."""

    def __init__(self, start: datetime = NOW) -> None:
        self.now = start.timestamp()
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def pub(example: Path) -> Publication:
    config = example / "schedule.yaml"
    config.write_text(
        config.read_text()
        .replace("retry_first: 5m", "retry_first: 60s")
        .replace("retry_max: 1h", "retry_max: 240s")
        .replace("lifetime: 5d", "lifetime: 1h")
        .replace("hard_bounces: 3", "hard_bounces: 1")
    )
    return load_config(config)


def subscribe(pub: Publication, *addresses: str) -> None:
    engine = store.connect(pub.database_url)
    with engine.begin() as db:
        for address in addresses:
            store.add_subscriber(
                db, address, address.split("@")[0].title(), "weekly", NOW.timestamp()
            )
    engine.dispose()


def run(pub: Publication, backend: Backend, clock: Clock, now: datetime = NOW) -> RunReport:
    """One `publisher send` that sends at most one issue (resumed, or new)."""
    reports = send(pub, [backend], now, clock, clock.sleep)
    assert len(reports) <= 1, [r.line() for r in reports]
    return reports[0] if reports else RunReport("weekly", status="nothing new to send")


def rows(pub: Publication) -> dict[str, tuple[str, int, float]]:
    engine = store.connect(pub.database_url)
    with engine.connect() as db:
        found = db.execute(
            select(store.subscribers.c.address, store.deliveries.c.status,
                   store.deliveries.c.attempts, store.deliveries.c.next_attempt_at)
            .join(store.deliveries, store.deliveries.c.subscriber_id == store.subscribers.c.id)
        ).all()  # fmt: skip
    engine.dispose()
    return {r.address: (r.status, r.attempts, r.next_attempt_at) for r in found}


def test_everyone_once_then_nothing_new(pub: Publication) -> None:
    subscribe(pub, "ann@example.org", "bob@example.org", "cy@example.org")
    backend = MemoryBackend({}, str(pub.root))
    report = run(pub, backend, Clock())
    assert (report.status, report.sent, report.number) == ("done", 3, 1)
    assert sorted(e.recipient for e, _ in backend.outbox) == [
        "ann@example.org", "bob@example.org", "cy@example.org",
    ]  # fmt: skip
    message = email.message_from_bytes(backend.outbox[0][1], policy=policy.default)
    assert message["To"] == "Ann <ann@example.org>"
    # Nothing was published since: no second issue (skip_empty).
    again = run(pub, backend, Clock(), NOW + timedelta(days=3))
    assert again.status == "nothing new to send" and len(backend.outbox) == 3


def test_next_issue_covers_only_the_new_window(pub: Publication) -> None:
    subscribe(pub, "ann@example.org")
    backend = MemoryBackend({}, str(pub.root))
    run(pub, backend, Clock())
    (pub.articles_dir / "new.md").write_text(
        "---\ntitle: Fresh news\ndate: 2026-12-01\n---\nNew.\n"
    )
    report = run(pub, backend, Clock(), NOW + timedelta(days=7))
    assert (report.number, report.sent) == (2, 1)
    second = email.message_from_bytes(backend.outbox[1][1], policy=policy.default)
    html = second.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Fresh news" in html and "Storm Ion" not in html
    assert "Advent market" in html  # dated 5 December: due in this window


def test_unsubscribed_and_suppressed_get_nothing(pub: Publication) -> None:
    subscribe(pub, "ann@example.org", "gone@example.org")
    engine = store.connect(pub.database_url)
    with engine.begin() as db:
        store.remove_subscriber(db, "gone@example.org", "weekly", NOW.timestamp())
    engine.dispose()
    backend = MemoryBackend({}, str(pub.root))
    assert run(pub, backend, Clock()).sent == 1
    assert [e.recipient for e, _ in backend.outbox] == ["ann@example.org"]


@pytest.fixture
def smtp(pub: Publication) -> Iterator[tuple[Backend, Script]]:
    with smtp_server() as (controller, script):
        backend = load_backend(
            "smtp",
            {"host": "127.0.0.1", "port": controller.port, "tls": "none", "timeout": 2},
            str(pub.root),
        )
        yield backend, script


def test_smtp_faults_follow_the_rules(pub: Publication, smtp: tuple[Backend, Script]) -> None:
    backend, script = smtp
    subscribe(pub, "ok@example.org", "reject@example.org", "tempfail@example.org",
              "closing@example.org", "reset@example.org", "after@example.org")  # fmt: skip
    clock = Clock()
    report = run(pub, backend, clock)
    state = rows(pub)
    assert state["ok@example.org"][:2] == ("sent", 1)
    assert state["after@example.org"][:2] == ("sent", 1)
    assert state["reject@example.org"][:2] == ("failed", 1)
    for address in ("tempfail@example.org", "closing@example.org", "reset@example.org"):
        status, attempts, due = state[address]
        assert (status, attempts) == ("deferred", 1)
        assert due > NOW.timestamp() + 59  # retry_first
    assert report.status == "sending"  # not done while anyone is deferred
    assert clock.slept  # throttling replies slowed the run
    # Suppressed after one hard bounce (hard_bounces: 1).
    engine = store.connect(pub.database_url)
    with engine.connect() as db:
        assert [
            m.suppressed for m in store.members(db, "weekly") if m.address.startswith("reject")
        ] == [True]
    engine.dispose()

    # Later runs retry with doubling delays until the lifetime (1 h) has passed.
    delays = []
    for _ in range(60):  # bounded
        waiting = [v for v in rows(pub).values() if v[0] == "deferred"]
        if not waiting:
            break
        before = rows(pub)["tempfail@example.org"]
        clock.now = max(clock.now, min(v[2] for v in waiting))
        report = run(pub, backend, clock)
        after = rows(pub)["tempfail@example.org"]
        if after[0] == "deferred" and after[1] > before[1]:
            delays.append(round(after[2] - clock.now))
    assert delays[:3] == [120, 240, 240]  # doubling, capped at retry_max
    assert rows(pub)["tempfail@example.org"][0] == "failed"  # expired
    assert report.status == "done"
    received = [r for _, r, _ in script.received]
    assert sorted(set(received)) == ["after@example.org", "ok@example.org"]
    assert len(received) == 2  # nobody twice


def test_many_failures_pause_the_issue(pub: Publication) -> None:
    config = pub.path
    config.write_text(
        config.read_text().replace("hard_bounces: 1", "hard_bounces: 1\n  pause_after: 2")
    )
    pub = load_config(config)
    subscribe(pub, "a@example.org", "b@example.org", "c@example.org", "d@example.org")
    backend = MemoryBackend(
        {"fail": {"a@example.org": "permanent", "b@example.org": "permanent"}}, str(pub.root)
    )
    report = run(pub, backend, Clock())
    # Paused after two failures in a row; a message already handed to the sending thread
    # may still have gone out.
    assert report.status == "paused" and report.failed == 2 and report.sent <= 1
    # A later run resumes the paused issue and finishes it.
    backend.failures.clear()
    resumed = run(pub, backend, Clock())
    assert (resumed.number, resumed.status) == (1, "done")
    assert sorted(e.recipient for e, _ in backend.outbox) == ["c@example.org", "d@example.org"]


def test_two_composers_one_issue(pub: Publication) -> None:
    subscribe(pub, "ann@example.org")
    engine = store.connect(pub.database_url)
    digest = pub.config.digests[0]
    first = open_issue(engine, pub, digest, NOW, period=NOW)
    assert first is not None
    assert open_issue(engine, pub, digest, NOW, period=NOW) is None  # that period has one
    assert open_issue(engine, pub, digest, NOW) is None  # and nothing is left for a second
    engine.dispose()


def test_rate_limits(pub: Publication) -> None:
    config = pub.path
    config.write_text(config.read_text().replace(
        "hard_bounces: 1", "hard_bounces: 1\n  rate: {per_second: 2, per_hour: 5}"
    ))  # fmt: skip
    pub = load_config(config)
    subscribe(pub, *(f"r{n}@example.org" for n in range(8)))
    backend = MemoryBackend({}, str(pub.root))
    clock = Clock()
    report = run(pub, backend, clock)
    assert report.sent == 5 and report.pending == 3 and report.limited
    assert report.status == "sending"
    assert sum(clock.slept) >= 2.0  # 5 messages at 2 a second
    # The hour's count comes from the ledger: a new process an hour later may go on.
    clock.now += 3600
    assert run(pub, backend, clock).status == "done"
    assert len(backend.outbox) == 8


@pytest.mark.parametrize(("tags", "count"), [([], 5), (["harbour", "FOOD"], 3)])
def test_next_issue_reads_only_candidates_and_agrees(
    pub: Publication, tags: list[str], count: int
) -> None:
    from publisher.build import build, load_articles
    from publisher.delivery import next_issue
    from publisher.digest.issue import select_articles

    digest = pub.config.digests[0].model_copy(update={"tags": tags, "max_articles": 5})
    everything = load_articles(pub, build(pub, NOW, write=False).published)
    expected = [a.slug for a in select_articles(everything, digest, NOW).chosen]
    engine = store.open_database(pub)
    upcoming = next_issue(engine, pub, digest, NOW)
    engine.dispose()
    assert upcoming is not None and [a.slug for a in upcoming.articles] == expected
    assert len(expected) == count


def test_sent_rows_are_recorded_many_to_a_transaction(pub: Publication) -> None:
    """One commit per message was a third of the time per message: the rows are recorded
    ``delivery.record_every`` (100) at a time."""
    from sqlalchemy import event

    from publisher.delivery import Sender, send_digest

    from .sending import KEY

    subscribe(pub, *(f"r{n}@example.org" for n in range(300)))
    engine = store.connect(pub.database_url)
    commits: list[int] = []
    event.listen(engine, "commit", lambda connection: commits.append(1))
    outbox = MemoryBackend({}, str(pub.root))
    sender = Sender(engine, pub, [outbox], clock=Clock())
    [report] = send_digest(sender, pub.config.digests[0], NOW, KEY)
    engine.dispose()
    assert (report.sent, len(outbox.outbox)) == (300, 300)
    assert len(commits) < 40  # 300 rows by 100, claims by 100, and the run's own
