"""The web side's per-client counts, shared by every `publisher serve` on the database."""

from __future__ import annotations

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.engine import Connection

from publisher.store.schema import web_limits


def count_event(
    db: Connection, kind: str, client: str, now: float, limit: int, per: float, take: bool
) -> bool:
    """Whether ``client`` is within ``limit`` events of ``kind`` in the last ``per``
    seconds; with ``take``, one more is counted when it is. In the caller's transaction:
    on SQLite the first statement writes, so the write lock orders two processes; on
    PostgreSQL a lock on the client's key does."""
    c = web_limits.c
    client = client[:64]
    if db.dialect.name == "postgresql":
        db.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                   {"key": f"publisher-limit:{kind}:{client}"})  # fmt: skip
    db.execute(delete(web_limits).where(c.kind == kind, c.client == client, c.at <= now - per))
    seen = db.execute(select(func.count()).where(c.kind == kind, c.client == client)).scalar_one()
    if seen >= limit:
        return False
    if take:
        db.execute(insert(web_limits).values(kind=kind, client=client, at=now))
    return True


def forget_before(db: Connection, moment: float) -> None:
    """Events older than every window: a flood from many addresses leaves no rows."""
    db.execute(delete(web_limits).where(web_limits.c.at < moment))
