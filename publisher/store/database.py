"""Opening the state database: SQLite in WAL mode by default (a private file), any
SQLAlchemy URL such as PostgreSQL; every failure a ``StateError`` naming ``state.database``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from publisher.config import Publication
from publisher.errors import Problem, StateError
from publisher.files import private_file
from publisher.store.migrate import migrate


def open_database(pub: Publication) -> Engine:
    """The publication's state database (``state.database``, default SQLite in ``var/``);
    a failure to open it is a ``StateError`` that names that key and its line."""
    try:
        return connect(pub.database_url)
    except StateError as exc:
        line = pub.line_of("state", "database") or pub.line_of("state")
        raise StateError(
            [Problem(pub.path.name, line, p.where, p.what) for p in exc.problems]
        ) from exc


def connect(url: str) -> Engine:
    """An engine with the schema in place; SQLite in WAL mode with foreign keys on."""
    shown = _shown_url(url)
    try:
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            private_file(Path(url.removeprefix("sqlite:///")))
        engine = create_engine(url)
    except OSError as exc:
        raise _state_error(f"cannot create {shown}: {exc.strerror}") from exc
    except (ArgumentError, ImportError) as exc:  # NoSuchModuleError is an ArgumentError
        raise _state_error(f"{shown} is not a database URL that can be used: {exc}") from exc
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi: Any, record: Any) -> None:
            cursor = dbapi.cursor()
            # WAL: readers never block the sender; NORMAL: a commit survives a crash of the
            # process (only a power cut can lose the last few), at a fraction of FULL's cost.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.close()

    try:
        migrate(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise _state_error(f"cannot open {shown}: {database_reason(exc)}") from exc
    return engine


def database_reason(exc: SQLAlchemyError) -> str:
    """What the database said, on one line (drivers' messages run over several)."""
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__


def _shown_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(url)


def _state_error(what: str) -> StateError:
    return StateError([Problem("", None, "state.database", what)])
