"""Returned mail in the state database: each bounce, complaint and mailed unsubscribe
acted on (once, by its key), what they do to a subscriber and to a ledger row, the counts
per issue, and the digests held for their complaint or bounce rate."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, func, select, update

from publisher.store.schema import deliveries, holds, issues, returns, subscribers, subscriptions

KINDS = ("hard", "soft", "complaint", "unsubscribe")


def seen(db: Connection, key: str) -> bool:
    """Whether the message (or ESP event) with this key was acted on already."""
    return db.execute(select(returns.c.id).where(returns.c.key == key)).first() is not None


def record(
    db: Connection,
    key: str,
    now: float,
    source: str,
    kind: str,
    subscriber_id: int | None,
    issue_id: int | None,
    reason: str,
) -> None:
    """Keep what was acted on. Two readers racing on the same message: the second one's
    transaction fails on the unique key and changes nothing."""
    db.execute(
        returns.insert().values(
            key=key, received_at=now, source=source, kind=kind, subscriber_id=subscriber_id,
            issue_id=issue_id, reason=reason[:1000],
        )
    )  # fmt: skip


def recipient(db: Connection, issue_id: int, public_id: str) -> int | None:
    """The subscriber a VERP token names, if the issue was addressed to them."""
    query = (
        select(subscribers.c.id)
        .join(deliveries, deliveries.c.subscriber_id == subscribers.c.id)
        .where(subscribers.c.public_id == public_id, deliveries.c.issue_id == issue_id)
    )
    found = db.execute(query).scalar()
    return None if found is None else int(found)


def by_public_id(db: Connection, public_id: str) -> int | None:
    query = select(subscribers.c.id).where(subscribers.c.public_id == public_id)
    found = db.execute(query).scalar()
    return None if found is None else int(found)


def by_address(db: Connection, address: str) -> int | None:
    query = select(subscribers.c.id).where(subscribers.c.key == address.strip().lower())
    found = db.execute(query).scalar()
    return None if found is None else int(found)


def public_id_of(db: Connection, subscriber_id: int) -> str:
    query = select(subscribers.c.public_id).where(subscribers.c.id == subscriber_id)
    return str(db.execute(query).scalar_one())


def latest_issue_to(db: Connection, subscriber_id: int) -> int | None:
    """The newest issue that went to the subscriber: what an ESP report that names no
    message of ours is about."""
    query = (
        select(deliveries.c.issue_id)
        .where(deliveries.c.subscriber_id == subscriber_id,
               deliveries.c.status.in_(("sent", "failed")))
        .order_by(deliveries.c.updated_at.desc(), deliveries.c.issue_id.desc())
        .limit(1)
    )  # fmt: skip
    found = db.execute(query).scalar()
    return None if found is None else int(found)


def issue_named(db: Connection, digest: str, number: int) -> int | None:
    query = select(issues.c.id).where(issues.c.digest == digest, issues.c.number == number)
    found = db.execute(query).scalar()
    return None if found is None else int(found)


def digest_of(db: Connection, issue_id: int) -> str | None:
    found = db.execute(select(issues.c.digest).where(issues.c.id == issue_id)).scalar()
    return None if found is None else str(found)


def fail_delivery(
    db: Connection, issue_id: int, subscriber_id: int, reply: str, now: float
) -> None:
    """The server accepted the message and then returned it for good: its row is failed,
    with what the report said."""
    db.execute(
        update(deliveries)
        .where(deliveries.c.issue_id == issue_id, deliveries.c.subscriber_id == subscriber_id,
               deliveries.c.status == "sent")
        .values(status="failed", reply=reply[:1000], updated_at=now)
    )  # fmt: skip


def soft_bounces_since(db: Connection, subscriber_id: int, since: float) -> int:
    query = select(func.count()).where(
        returns.c.subscriber_id == subscriber_id,
        returns.c.kind == "soft",
        returns.c.received_at >= since,
    )
    return int(db.execute(query).scalar_one())


def suppress(db: Connection, subscriber_id: int, reason: str, now: float) -> bool:
    """Suppress the address (nothing is sent to it again); whether it was not already."""
    result = db.execute(
        update(subscribers)
        .where(subscribers.c.id == subscriber_id, subscribers.c.suppressed_at.is_(None))
        .values(suppressed_at=now, suppressed_reason=reason[:1000])
    )
    return bool(result.rowcount)


def unsubscribe_all(db: Connection, subscriber_id: int, now: float) -> int:
    """End every active (or pending) subscription of the subscriber; how many."""
    result = db.execute(
        update(subscriptions)
        .where(subscriptions.c.subscriber_id == subscriber_id,
               subscriptions.c.status.in_(("active", "pending")))
        .values(status="unsubscribed", updated_at=now)
    )  # fmt: skip
    return int(result.rowcount)


def counts(db: Connection, issue_id: int) -> dict[str, int]:
    """Per kind, what came back about the issue."""
    query = (
        select(returns.c.kind, func.count())
        .where(returns.c.issue_id == issue_id)
        .group_by(returns.c.kind)
    )
    found = {str(kind): int(n) for kind, n in db.execute(query)}
    return {kind: found.get(kind, 0) for kind in KINDS}


def unsubscribed_after(
    db: Connection, issue_id: int, list_name: str, since: float, until: float | None
) -> int:
    """Recipients of the issue whose subscription to ``list_name`` ended after it was
    composed and before the next issue (by the link, the preferences page, a mail)."""
    ended = and_(
        subscriptions.c.subscriber_id == deliveries.c.subscriber_id,
        subscriptions.c.list == list_name,
        subscriptions.c.status == "unsubscribed",
        subscriptions.c.updated_at >= since,
    )
    if until is not None:
        ended = and_(ended, subscriptions.c.updated_at < until)
    query = (
        select(func.count())
        .select_from(deliveries.join(subscriptions, ended))
        .where(deliveries.c.issue_id == issue_id, deliveries.c.status == "sent")
    )
    return int(db.execute(query).scalar_one())


def reached(db: Connection, issue_id: int) -> int:
    """How many people the issue was handed over for (sent, or failed after that)."""
    query = select(func.count()).where(
        deliveries.c.issue_id == issue_id, deliveries.c.status.in_(("sent", "failed"))
    )
    return int(db.execute(query).scalar_one())


def failed(db: Connection, issue_id: int) -> int:
    query = select(func.count()).where(
        deliveries.c.issue_id == issue_id, deliveries.c.status == "failed"
    )
    return int(db.execute(query).scalar_one())


def hold(db: Connection, digest: str, reason: str, now: float) -> bool:
    """Hold the digest; whether it was not held already (the first reason stays)."""
    if held(db, digest) is not None:
        return False
    db.execute(holds.insert().values(digest=digest, reason=reason[:1000], held_at=now))
    return True


def held(db: Connection, digest: str) -> str | None:
    found = db.execute(select(holds.c.reason).where(holds.c.digest == digest)).scalar()
    return None if found is None else str(found)


def all_held(db: Connection) -> dict[str, Any]:
    return {row.digest: row for row in db.execute(select(holds))}


def release(db: Connection, digest: str) -> bool:
    return bool(db.execute(holds.delete().where(holds.c.digest == digest)).rowcount)
