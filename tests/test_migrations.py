"""Migrations: each revision upgrades a database written by the one before it, on SQLite
and PostgreSQL, and loses nothing; the migrated schema is the one the queries use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from publisher import store
from publisher.store import ledger
from publisher.store.migrate import BASELINE, HEAD, SCRIPTS, current_revision, migrate

from .postgres import needs_postgres, postgres_cluster

# Rows as the baseline schema holds them: every table, every column it has.
BASELINE_ROWS = [
    "INSERT INTO subscribers (id, address, key, name, public_id, created_at, hard_bounces,"
    " suppressed_at, suppressed_reason, confirm_sent_at) VALUES"
    " (1, 'Ann@example.org', 'ann@example.org', 'Ann', 'p1', 1.0, 0, NULL, NULL, 5.0),"
    " (2, 'bo@example.org', 'bo@example.org', '', 'p2', 2.0, 3, 9.0, '550 no such user', NULL)",
    "INSERT INTO subscriptions (subscriber_id, list, status, updated_at) VALUES"
    " (1, 'weekly', 'active', 1.0), (2, 'weekly', 'unsubscribed', 3.0)",
    "INSERT INTO issues (id, digest, number, window_start, window_end, created_at, status,"
    " period) VALUES (1, 'weekly', 1, NULL, 100.0, 100.0, 'sending', 100.0)",
    "INSERT INTO deliveries (issue_id, subscriber_id, status, attempts, next_attempt_at,"
    " first_attempt_at, code, reply, provider_id, updated_at) VALUES"
    " (1, 1, 'deferred', 2, 400.0, 110.0, 451, 'greylisted', NULL, 300.0),"
    " (1, 2, 'sent', 1, 0.0, 110.0, 250, NULL, '250 ok', 110.0)",
    "INSERT INTO archive (issue_id, html) VALUES (1, '<p>issue one</p>')",
]


def _alembic() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    return ScriptDirectory.from_config(config)


def test_head_is_the_newest_revision() -> None:
    assert _alembic().get_current_head() == HEAD


def test_the_migrated_schema_is_the_one_the_queries_use(tmp_path: Path) -> None:
    engine = store.connect(f"sqlite:///{tmp_path / 'state.db'}")
    with engine.connect() as db:
        differences = compare_metadata(MigrationContext.configure(db), store.metadata)
    engine.dispose()
    assert differences == []


def _upgrade_keeps_everything(engine: Engine) -> None:
    migrate(engine, BASELINE)
    with engine.begin() as db:
        for statement in BASELINE_ROWS:
            db.execute(text(statement))
    migrate(engine)
    with engine.connect() as db:
        assert current_revision(db) == HEAD
        people = db.execute(
            text("SELECT address, hard_bounces, suppressed_reason, confirm_sent_at"
                 " FROM subscribers ORDER BY id")
        ).all()  # fmt: skip
        assert [tuple(r) for r in people] == [
            ("Ann@example.org", 0, None, 5.0),
            ("bo@example.org", 3, "550 no such user", None),
        ]
        rows = db.execute(
            text("SELECT subscriber_id, status, attempts, next_attempt_at, reply, lease_owner"
                 " FROM deliveries ORDER BY subscriber_id")
        ).all()  # fmt: skip
        assert [tuple(r) for r in rows] == [
            (1, "deferred", 2, 400.0, "greylisted", None),
            (2, "sent", 1, 0.0, None, None),
        ]
        issue = db.execute(text("SELECT status, period, paused_reason FROM issues")).one()
        assert tuple(issue) == ("sending", 100.0, None)
        assert db.execute(text("SELECT html FROM archive")).scalar() == "<p>issue one</p>"
        subscriptions = db.execute(text("SELECT count(*) FROM subscriptions")).scalar()
        assert subscriptions == 2
    # The upgraded database works: the ledger reads it.
    with engine.connect() as db:
        assert ledger.row_counts(db, 1) == {"deferred": 1, "sent": 1}


def test_upgrade_from_the_previous_revision_on_sqlite(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        _upgrade_keeps_everything(engine)
    finally:
        engine.dispose()


@pytest.mark.slow
@needs_postgres
def test_upgrade_from_the_previous_revision_on_postgres() -> None:
    with postgres_cluster() as url:
        engine = create_engine(url)
        try:
            _upgrade_keeps_everything(engine)
            with engine.connect() as db:
                differences = compare_metadata(MigrationContext.configure(db), store.metadata)
            assert differences == []
        finally:
            engine.dispose()


# What `metadata.create_all` of those versions wrote (SQLAlchemy's DDL for SQLite).
OLD_TABLES = """
CREATE TABLE issues (id INTEGER NOT NULL, digest VARCHAR(64) NOT NULL,
    number INTEGER NOT NULL, window_start FLOAT, window_end FLOAT NOT NULL,
    created_at FLOAT NOT NULL, status VARCHAR(16) NOT NULL, PRIMARY KEY (id),
    UNIQUE (digest, number));
CREATE TABLE subscribers (id INTEGER NOT NULL, address VARCHAR(254) NOT NULL,
    "key" VARCHAR(254) NOT NULL, name VARCHAR(200) NOT NULL,
    public_id VARCHAR(32) NOT NULL, created_at FLOAT NOT NULL,
    hard_bounces INTEGER NOT NULL, suppressed_at FLOAT, suppressed_reason VARCHAR(1000),
    PRIMARY KEY (id), UNIQUE ("key"), UNIQUE (public_id));
CREATE TABLE archive (issue_id INTEGER NOT NULL, html TEXT NOT NULL,
    PRIMARY KEY (issue_id), FOREIGN KEY(issue_id) REFERENCES issues (id));
CREATE TABLE deliveries (issue_id INTEGER NOT NULL, subscriber_id INTEGER NOT NULL,
    status VARCHAR(16) NOT NULL, attempts INTEGER NOT NULL, next_attempt_at FLOAT NOT NULL,
    first_attempt_at FLOAT, code INTEGER, reply VARCHAR(1000), provider_id VARCHAR(200),
    updated_at FLOAT, PRIMARY KEY (issue_id, subscriber_id),
    FOREIGN KEY(issue_id) REFERENCES issues (id),
    FOREIGN KEY(subscriber_id) REFERENCES subscribers (id));
CREATE INDEX deliveries_due ON deliveries (issue_id, status, next_attempt_at);
CREATE INDEX deliveries_sent_at ON deliveries (status, updated_at);
CREATE TABLE subscriptions (subscriber_id INTEGER NOT NULL, list VARCHAR(64) NOT NULL,
    status VARCHAR(16) NOT NULL, updated_at FLOAT NOT NULL, PRIMARY KEY (subscriber_id, list),
    FOREIGN KEY(subscriber_id) REFERENCES subscribers (id))
"""


@pytest.fixture
def before_migrations(tmp_path: Path) -> Iterator[Path]:
    """A database as the versions before migrations made it: no revision table, and
    neither the column nor the index they later added by hand."""
    file = tmp_path / "state.db"
    engine = create_engine(f"sqlite:///{file}")
    with engine.begin() as db:
        for statement in OLD_TABLES.split(";"):
            db.execute(text(statement))
        db.execute(text(
            "INSERT INTO subscribers VALUES (1, 'ann@example.org', 'ann@example.org', 'Ann',"
            " 'p1', 1.0, 0, NULL, NULL)"
        ))  # fmt: skip
        db.execute(text("INSERT INTO subscriptions VALUES (1, 'weekly', 'active', 1.0)"))
        db.execute(text("INSERT INTO issues VALUES (1, 'weekly', 1, NULL, 100.0, 100.0, 'done')"))
        db.execute(text(
            "INSERT INTO deliveries VALUES (1, 1, 'sent', 1, 0.0, 110.0, 250, NULL, 'ok', 110.0)"
        ))  # fmt: skip
    engine.dispose()
    yield file


def test_a_database_from_before_migrations_is_upgraded_in_place(before_migrations: Path) -> None:
    engine = store.connect(f"sqlite:///{before_migrations}")
    try:
        with engine.connect() as db:
            assert current_revision(db) == HEAD
            assert db.execute(text("SELECT address FROM subscribers")).scalar() == "ann@example.org"
            assert db.execute(text("SELECT period FROM issues")).one() == (None,)
            assert ledger.row_counts(db, 1) == {"sent": 1}
            differences = compare_metadata(MigrationContext.configure(db), store.metadata)
        assert differences == []
    finally:
        engine.dispose()


def test_a_database_at_the_newest_revision_is_left_alone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store.connect(url).dispose()
    engine = create_engine(url)
    statements: list[str] = []
    from sqlalchemy import event

    event.listen(engine, "before_cursor_execute",
                 lambda *args: statements.append(str(args[2])))  # fmt: skip
    migrate(engine)
    engine.dispose()
    assert len(statements) <= 3  # the revision table's presence and its one row


def _sent_under_windows(engine: Engine, window_end: float) -> None:
    """A database at 0002 whose digest sent issue 1 under the date-window rule."""
    migrate(engine, "0002")
    with engine.begin() as db:
        db.execute(text(
            "INSERT INTO issues (id, digest, number, window_start, window_end, created_at,"
            f" status, period) VALUES (1, 'weekly', 1, NULL, {window_end}, {window_end},"
            " 'done', NULL)"
        ))  # fmt: skip
    migrate(engine)


def test_0003_counts_an_issue_sent_by_date_window_as_having_sent_its_window(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        _sent_under_windows(engine, 100.0)
        with engine.connect() as db:
            assert ledger.sent_articles(db, "weekly") == ledger.Sent(frozenset(), 100.0)
            assert ledger.issue_slugs(db, 1) is None  # its articles: those of its window
            assert ledger.sent_articles(db, "other") == ledger.Sent(frozenset(), None)
    finally:
        engine.dispose()


@pytest.mark.slow
@needs_postgres
def test_0003_upgrade_on_postgres() -> None:
    with postgres_cluster() as url:
        engine = create_engine(url)
        try:
            _sent_under_windows(engine, 100.0)
            with engine.connect() as db:
                assert ledger.sent_articles(db, "weekly") == ledger.Sent(frozenset(), 100.0)
        finally:
            engine.dispose()


def test_after_the_upgrade_nothing_is_sent_twice_and_new_articles_go_out(
    example: Path,
) -> None:
    from datetime import timedelta

    from publisher.backends.memory import MemoryBackend
    from publisher.config import load_config

    from .conftest import NOW
    from .sending import send

    pub = load_config(example / "schedule.yaml")
    (example / "var").mkdir()
    engine = create_engine(pub.database_url)
    try:
        _sent_under_windows(engine, NOW.timestamp())
        with engine.begin() as db:
            store.add_subscriber(db, "a@example.org", "Ann", "weekly", NOW.timestamp())
    finally:
        engine.dispose()
    outbox = MemoryBackend({}, str(pub.root))
    assert send(pub, [outbox], NOW + timedelta(hours=1)) == []  # issue 1 had them all
    (example / "articles" / "new.md").write_text(
        "---\ntitle: New\ndate: 2026-11-28 12:30\n---\nNew text.\n"
    )
    reports = send(pub, [outbox], NOW + timedelta(hours=1))
    assert [(r.number, r.sent) for r in reports] == [(2, 1)]
    engine = create_engine(pub.database_url)
    with engine.connect() as db:
        assert ledger.issue_slugs(db, 2) == ["new"]
    engine.dispose()


def test_0004_keeps_every_issue_and_gives_them_no_subject(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        migrate(engine, "0003")
        with engine.begin() as db:
            db.execute(text(
                "INSERT INTO issues (id, digest, number, window_start, window_end, created_at,"
                " status, period, articles_until) VALUES"
                " (1, 'weekly', 1, NULL, 100.0, 90.0, 'done', NULL, NULL)"
            ))  # fmt: skip
        migrate(engine)
        with engine.connect() as db:
            assert ledger.sent_issues(db, "weekly") == [(1, 90.0, None)]
    finally:
        engine.dispose()


def upgraded_from(tmp_path: Path, revision: str) -> Engine:
    """A database written by ``revision`` (the baseline rows in it), upgraded to head."""
    engine = create_engine(f"sqlite:///{tmp_path / 'state.db'}")
    migrate(engine, revision)
    with engine.begin() as db:
        for statement in BASELINE_ROWS:
            db.execute(text(statement))
    migrate(engine)
    return engine


def test_0005_adds_the_sources_beside_everything_that_was(tmp_path: Path) -> None:
    from publisher.model import UpstreamEntry
    from publisher.store.upstream import record_entries, shown_entries, source_states

    engine = upgraded_from(tmp_path, "0004")
    try:
        with engine.begin() as db:
            assert db.execute(text("SELECT count(*) FROM deliveries")).scalar() == 2
            assert db.execute(text("SELECT html FROM archive")).scalar() == "<p>issue one</p>"
            assert source_states(db) == {}
            entry = UpstreamEntry(
                "i", "s", "T", "https://up.example/1", None, None, None, (), "", "<p>x</p>",
                "https://up.example/1",
            )  # fmt: skip
            assert record_entries(db, "up", [entry], 5.0, 50) == (1, 0)
            assert [stored.entry for stored in shown_entries(db, ["up"])] == [entry]
    finally:
        engine.dispose()


def test_0006_adds_returned_mail_beside_everything_that_was(tmp_path: Path) -> None:
    from publisher.store import returns

    engine = upgraded_from(tmp_path, "0005")
    try:
        with engine.begin() as db:
            assert ledger.row_counts(db, 1) == {"deferred": 1, "sent": 1}
            assert db.execute(text("SELECT count(*) FROM subscriptions")).scalar() == 2
            assert returns.counts(db, 1) == {"hard": 0, "soft": 0, "complaint": 0,
                                             "unsubscribe": 0}  # fmt: skip
            returns.record(db, "k" * 64, 5.0, "mailbox", "hard", 2, 1, "5.1.1 gone")
            returns.fail_delivery(db, 1, 2, "returned: 5.1.1 gone", 5.0)
            assert returns.counts(db, 1)["hard"] == 1 and returns.seen(db, "k" * 64)
            assert ledger.row_counts(db, 1) == {"deferred": 1, "failed": 1}
            assert returns.hold(db, "weekly", "issue 1: too many complaints", 6.0)
            assert returns.held(db, "weekly") == "issue 1: too many complaints"
    finally:
        engine.dispose()


def test_0007_gives_every_subscriber_an_empty_time_zone(tmp_path: Path) -> None:
    engine = upgraded_from(tmp_path, "0006")
    try:
        with engine.begin() as db:
            assert ledger.row_counts(db, 1) == {"deferred": 1, "sent": 1}
            assert store.zone_counts(db, "weekly") == {None: 1}  # the other left
            member = next(store.members(db, "weekly"))
            store.set_zone(db, member.public_id, "Asia/Kolkata")
            assert store.zone_of_subscriber(db, member.public_id) == "Asia/Kolkata"
    finally:
        engine.dispose()


def test_0008_adds_the_workers_tables_beside_everything_that_was(tmp_path: Path) -> None:
    from publisher.store import tasks

    engine = upgraded_from(tmp_path, "0007")
    try:
        with engine.begin() as db:
            assert ledger.row_counts(db, 1) == {"deferred": 1, "sent": 1}
            assert db.execute(text("SELECT html FROM archive")).scalar() == "<p>issue one</p>"
            tasks.placed(db, "t1", 1, 50, 10.0)
            assert tasks.rows_queued(db, 1, 11.0) == 50
            assert tasks.take_duty(db, "scheduler", "a", 10.0, 30.0)
            assert tasks.on_duty(db, "scheduler", 11.0) == ("a", 10.0)
    finally:
        engine.dispose()


def test_processes_started_at_once_on_a_new_database_all_open_it(tmp_path: Path) -> None:
    """Several commands started together on a new database (two `serve`, a `run`):
    one writes the schema, the others wait and find it done; none fails."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'state.db'}"
    opening = f"from publisher import store; store.connect({url!r}).dispose()"
    processes = [
        subprocess.Popen([sys.executable, "-c", opening], stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    errors = [process.communicate(timeout=120)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * 6, errors
    engine = create_engine(url)
    try:
        with engine.connect() as db:
            assert current_revision(db) == HEAD
    finally:
        engine.dispose()
