"""The state database (SQLAlchemy Core): subscribers and their lists, digest issues, and the
delivery ledger — one row per (issue, recipient).

SQLite in WAL mode by default (embedded, nothing to install); any SQLAlchemy URL, such as
PostgreSQL, works too. Times are stored as UTC epoch seconds (REAL): the same on every
database, and ordered.
"""

from __future__ import annotations

from datetime import UTC, datetime

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
    inspect,
    text,
)
from sqlalchemy.engine import Engine

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


def upgrade(engine: Engine) -> None:
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
