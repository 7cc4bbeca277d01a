"""The state database (SQLAlchemy Core): subscribers and their lists, digest issues, and the
delivery ledger — one row per (issue, recipient).

SQLite in WAL mode by default (embedded, nothing to install); any SQLAlchemy URL, such as
PostgreSQL, works too. Times are stored as UTC epoch seconds (REAL): the same on every
database, and ordered.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from publisher.config import Publication
from publisher.errors import Problem, StateError
from publisher.files import private_file

metadata = MetaData()

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True),
    # The address as validated; `key` (lower-cased) makes Ann@X and ann@x one subscriber.
    Column("address", String(254), nullable=False),
    Column("key", String(254), nullable=False, unique=True),
    Column("name", String(200), nullable=False, default=""),
    # What tokens carry instead of the address.
    Column("public_id", String(32), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("hard_bounces", Integer, nullable=False, default=0),
    Column("suppressed_at", Float),
    Column("suppressed_reason", String(1000)),
    # When the last confirmation mail went out: repeated sign-ups do not spam the address.
    Column("confirm_sent_at", Float),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("subscriber_id", ForeignKey("subscribers.id"), primary_key=True),
    Column("list", String(64), primary_key=True),
    Column("status", String(16), nullable=False),  # active | unsubscribed
    Column("updated_at", Float, nullable=False),
)

issues = Table(
    "issues",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("number", Integer, nullable=False),
    Column("window_start", Float),
    Column("window_end", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("status", String(16), nullable=False),  # sending | paused | done
    # The scheduled moment the issue is for (None when sent by hand).
    Column("period", Float),
    # One issue per number per digest, whoever composes it (two schedulers included).
    UniqueConstraint("digest", "number"),
    # And one issue per scheduled period.
    Index("issues_period", "digest", "period", unique=True),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("issue_id", ForeignKey("issues.id"), primary_key=True),
    Column("subscriber_id", ForeignKey("subscribers.id"), primary_key=True),
    Column("status", String(16), nullable=False),  # pending | deferred | sent | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False, default=0.0),
    Column("first_attempt_at", Float),
    Column("code", Integer),
    Column("reply", String(1000)),
    Column("provider_id", String(200)),
    Column("updated_at", Float),
    Index("deliveries_due", "issue_id", "status", "next_attempt_at"),
    Index("deliveries_sent_at", "status", "updated_at"),
)


archive = Table(
    "archive",
    metadata,
    # The issue as a web page ("view in browser"), kept when it is first composed: the
    # archive shows what was sent, even after an article is edited.
    Column("issue_id", ForeignKey("issues.id"), primary_key=True),
    Column("html", Text, nullable=False),
)


def epoch(moment: datetime) -> float:
    return moment.timestamp()


def moment(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


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
        metadata.create_all(engine)
        _upgrade(engine)
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


def _upgrade(engine: Engine) -> None:
    """Bring a database made by an earlier version up to this schema (additive only)."""
    subscriber_columns = {c["name"] for c in inspect(engine).get_columns("subscribers")}
    if "confirm_sent_at" not in subscriber_columns:
        with engine.begin() as db:
            db.execute(text("ALTER TABLE subscribers ADD COLUMN confirm_sent_at REAL"))
    columns = {c["name"] for c in inspect(engine).get_columns("issues")}
    if "period" not in columns:
        with engine.begin() as db:
            db.execute(text("ALTER TABLE issues ADD COLUMN period REAL"))
            db.execute(text("CREATE UNIQUE INDEX issues_period ON issues (digest, period)"))


@dataclass(frozen=True, slots=True)
class Member:
    id: int
    address: str
    name: str
    public_id: str
    status: str
    suppressed: bool


def add_subscriber(db: Connection, address: str, name: str, list_name: str, now: float) -> bool:
    """Subscribe ``address`` (already validated) to a list; True if that changed anything.
    A known address keeps its id and public id; an unsubscribed one is active again."""
    key = address.lower()
    row = db.execute(
        select(subscribers.c.id, subscribers.c.name).where(subscribers.c.key == key)
    ).first()
    if row is None:
        inserted = db.execute(
            subscribers.insert().values(
                address=address,
                key=key,
                name=name,
                public_id=secrets.token_urlsafe(12),
                created_at=now,
                hard_bounces=0,
            )
        ).inserted_primary_key
        assert inserted is not None
        subscriber_id = inserted[0]
    else:
        subscriber_id = row.id
        if name and name != row.name:
            db.execute(subscribers.update().where(subscribers.c.id == row.id).values(name=name))
    current = db.execute(
        select(subscriptions.c.status).where(
            subscriptions.c.subscriber_id == subscriber_id, subscriptions.c.list == list_name
        )
    ).scalar()
    if current == "active":
        return False
    if current is None:
        db.execute(
            subscriptions.insert().values(
                subscriber_id=subscriber_id, list=list_name, status="active", updated_at=now
            )
        )
    else:
        db.execute(
            subscriptions.update()
            .where(
                subscriptions.c.subscriber_id == subscriber_id, subscriptions.c.list == list_name
            )
            .values(status="active", updated_at=now)
        )
    return True


def remove_subscriber(db: Connection, address: str, list_name: str, now: float) -> bool:
    """Unsubscribe; the row stays (the address must not be mailed again), True if it was
    active."""
    subscriber_id = db.execute(
        select(subscribers.c.id).where(subscribers.c.key == address.lower())
    ).scalar()
    if subscriber_id is None:
        return False
    result = db.execute(
        subscriptions.update()
        .where(
            subscriptions.c.subscriber_id == subscriber_id,
            subscriptions.c.list == list_name,
            subscriptions.c.status == "active",
        )
        .values(status="unsubscribed", updated_at=now)
    )
    return bool(result.rowcount)


def members(db: Connection, list_name: str) -> Iterator[Member]:
    query = (
        select(
            subscribers.c.id,
            subscribers.c.address,
            subscribers.c.name,
            subscribers.c.public_id,
            subscriptions.c.status,
            subscribers.c.suppressed_at,
        )
        .join(subscriptions, subscriptions.c.subscriber_id == subscribers.c.id)
        .where(subscriptions.c.list == list_name)
        .order_by(subscribers.c.id)
    )
    for row in db.execute(query):
        yield Member(row.id, row.address, row.name, row.public_id, row.status,
                     row.suppressed_at is not None)  # fmt: skip


def count_active(db: Connection, list_name: str) -> int:
    return int(
        db.execute(
            select(func.count())
            .select_from(subscriptions.join(subscribers))
            .where(
                subscriptions.c.list == list_name,
                subscriptions.c.status == "active",
                subscribers.c.suppressed_at.is_(None),
            )
        ).scalar_one()
    )


def request_subscription(
    db: Connection, address: str, name: str, lists: list[str], now: float
) -> tuple[int, bool]:
    """Record a double opt-in request: ``pending`` for each list not already active.
    Returns the subscriber's id and whether a confirmation mail should go out (not when
    nothing is pending, nor within an hour of the last one)."""
    key = address.lower()
    row = db.execute(select(subscribers).where(subscribers.c.key == key)).first()
    if row is None:
        inserted = db.execute(
            subscribers.insert().values(
                address=address, key=key, name=name, public_id=secrets.token_urlsafe(12),
                created_at=now, hard_bounces=0,
            )
        ).inserted_primary_key  # fmt: skip
        assert inserted is not None
        subscriber_id, last_sent = int(inserted[0]), None
    else:
        subscriber_id, last_sent = row.id, row.confirm_sent_at
    pending = False
    for list_name in lists:
        status = db.execute(
            select(subscriptions.c.status).where(
                subscriptions.c.subscriber_id == subscriber_id, subscriptions.c.list == list_name
            )
        ).scalar()
        if status == "active":
            continue
        pending = True
        values = {"status": "pending", "updated_at": now}
        if status is None:
            db.execute(
                subscriptions.insert().values(subscriber_id=subscriber_id, list=list_name, **values)
            )
        else:
            this = and_(
                subscriptions.c.subscriber_id == subscriber_id, subscriptions.c.list == list_name
            )
            db.execute(subscriptions.update().where(this).values(**values))
    send = pending and (last_sent is None or now - last_sent > 3600)
    if send:
        db.execute(
            subscribers.update()
            .where(subscribers.c.id == subscriber_id)
            .values(confirm_sent_at=now)
        )
    return int(subscriber_id), send


def confirm_subscription(db: Connection, public_id: str, now: float) -> int:
    """Activate every pending subscription of the subscriber; how many."""
    subscriber_id = db.execute(
        select(subscribers.c.id).where(subscribers.c.public_id == public_id)
    ).scalar()
    if subscriber_id is None:
        return 0
    result = db.execute(
        subscriptions.update()
        .where(subscriptions.c.subscriber_id == subscriber_id, subscriptions.c.status == "pending")
        .values(status="active", updated_at=now)
    )
    return int(result.rowcount)


def set_lists(
    db: Connection, public_id: str, wanted: set[str], offered: list[str], now: float
) -> bool:
    """The preferences page: active on exactly the ``wanted`` lists among ``offered``. The
    signed link proves the address, so joining a list here needs no second confirmation.
    False for an unknown subscriber."""
    query = select(subscribers.c.id).where(subscribers.c.public_id == public_id)
    subscriber_id = db.execute(query).scalar()
    if subscriber_id is None:
        return False
    for list_name in offered:
        this = and_(
            subscriptions.c.subscriber_id == subscriber_id, subscriptions.c.list == list_name
        )
        current = db.execute(select(subscriptions.c.status).where(this)).scalar()
        status = "active" if list_name in wanted else "unsubscribed"
        if current is None and status == "active":
            row = {"subscriber_id": subscriber_id, "list": list_name, "status": status}
            db.execute(subscriptions.insert().values(**row, updated_at=now))
        elif current is not None and current != status:
            db.execute(subscriptions.update().where(this).values(status=status, updated_at=now))
    return True


def lists_of_subscriber(db: Connection, public_id: str) -> dict[str, str] | None:
    query = (
        select(subscriptions.c.list, subscriptions.c.status)
        .join(subscribers, subscribers.c.id == subscriptions.c.subscriber_id)
        .where(subscribers.c.public_id == public_id)
    )
    exists = db.execute(
        select(subscribers.c.id).where(subscribers.c.public_id == public_id)
    ).scalar()
    if exists is None:
        return None
    return {row.list: row.status for row in db.execute(query)}
