"""Bringing a state database to the newest schema: Alembic's revisions in ``migrations/``.

A database written before the project had migrations is first given the two columns the
versions of then added by hand, then stamped as the baseline (``0001``), then upgraded.
The newest revision is known here, so a database already there costs one query, not a
reading of the revision files at every command.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

HEAD = "0008"  # tests/test_migrations.py checks it is the newest revision
BASELINE = "0001"
SCRIPTS = Path(__file__).parent / "migrations"


def current_revision(db: Connection) -> str | None:
    """The database's revision; None when it has none (new, or from before migrations)."""
    if not inspect(db).has_table("alembic_version"):
        return None
    version = db.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return None if version is None else str(version)


def migrate(engine: Engine, target: str = HEAD) -> None:
    """Upgrade the database to ``target`` (the newest by default), whoever else is doing
    the same: a second process that loses the race finds the work done."""
    with engine.connect() as db:
        if current_revision(db) == target:
            return  # the common case: one read, no lock
    for attempt in range(3):  # bounded: only a concurrent upgrade makes us look again
        try:
            with engine.begin() as db:
                _one_at_a_time(db)
                if current_revision(db) == target:
                    return
                _upgrade(db, target)
            return
        except SQLAlchemyError:
            with engine.connect() as db:
                if current_revision(db) == target:
                    return
            if attempt == 2:
                raise


MIGRATION_LOCK = 0x7075626D  # PostgreSQL's advisory lock while a process migrates


def _one_at_a_time(db: Connection) -> None:
    """Hold the database for this upgrade from the first look at its revision: two
    processes started at once on a new database would otherwise both see no revision
    and both write one. On SQLite the write lock is taken at once (DDL then runs inside
    the transaction; the other process waits for it, up to the busy timeout); on
    PostgreSQL an advisory lock that the transaction's end releases."""
    if db.dialect.name == "sqlite":
        db.exec_driver_sql("BEGIN IMMEDIATE")
    elif db.dialect.name == "postgresql":
        db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})


def _upgrade(db: Connection, target: str) -> None:
    import logging

    # Alembic names each of its plugins at INFO level as it loads them (on import): eight
    # lines of its own internals before the operator's "Running upgrade" lines.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["connection"] = db
    if current_revision(db) is None and inspect(db).has_table("subscribers"):
        _before_migrations(db)
        command.stamp(config, BASELINE)
    command.upgrade(config, target)


def _before_migrations(db: Connection) -> None:
    """What the versions before migrations added to their own databases by hand; a
    database from then lacks one or both."""
    subscriber_columns = {c["name"] for c in inspect(db).get_columns("subscribers")}
    if "confirm_sent_at" not in subscriber_columns:
        db.execute(text("ALTER TABLE subscribers ADD COLUMN confirm_sent_at FLOAT"))
    if "period" not in {c["name"] for c in inspect(db).get_columns("issues")}:
        db.execute(text("ALTER TABLE issues ADD COLUMN period FLOAT"))
        db.execute(text("CREATE UNIQUE INDEX issues_period ON issues (digest, period)"))
