"""Subscribers and their lists: add, remove, request and confirm, list, count."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import and_, func, select, update
from sqlalchemy.engine import Connection

from publisher.store.schema import subscribers, subscriptions


@dataclass(frozen=True, slots=True)
class Member:
    id: int
    address: str
    name: str
    public_id: str
    status: str
    suppressed: bool


Added = Literal["added", "unchanged", "unsubscribed", "suppressed"]


def add_subscriber(
    db: Connection,
    address: str,
    name: str,
    list_name: str,
    now: float,
    resubscribe: bool = False,
) -> Added:
    """Subscribe ``address`` (already validated) to a list. A known address keeps its id
    and public id. What came of it:

    * ``added``: subscribed now (new, or pending until now);
    * ``unchanged``: it was active already;
    * ``unsubscribed``: it unsubscribed from this list, and stays so: consent is given
      back only by the person (``resubscribe``: the web form, or an operator who says the
      person asked again), never by an import;
    * ``suppressed``: the address is suppressed (it bounced for good); not subscribed.
    """
    key = address.lower()
    row = db.execute(
        select(subscribers.c.id, subscribers.c.name, subscribers.c.suppressed_at).where(
            subscribers.c.key == key
        )
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
        if row.suppressed_at is not None:
            return "suppressed"
    current = db.execute(
        select(subscriptions.c.status).where(
            subscriptions.c.subscriber_id == subscriber_id, subscriptions.c.list == list_name
        )
    ).scalar()
    if current == "unsubscribed" and not resubscribe:
        return "unsubscribed"
    if row is not None and name and name != row.name:
        db.execute(subscribers.update().where(subscribers.c.id == row.id).values(name=name))
    if current == "active":
        return "unchanged"
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
    return "added"


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


def find_subscriber(db: Connection, address: str) -> tuple[str, str] | None:
    """The name and public id of the subscriber with ``address``, or None."""
    row = db.execute(
        select(subscribers.c.name, subscribers.c.public_id).where(
            subscribers.c.key == address.lower()
        )
    ).first()
    return None if row is None else (str(row.name), str(row.public_id))


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


def unsubscribe_everywhere(db: Connection, public_id: str, now: float) -> None:
    """The one-click unsubscribe: every active subscription of the subscriber whose public
    id is ``public_id`` ends (the token names the person, not a list; the preferences page
    is where one list at a time is chosen)."""
    ids = (
        db.execute(select(subscribers.c.id).where(subscribers.c.public_id == public_id))
        .scalars()
        .all()
    )
    if ids:
        db.execute(
            update(subscriptions)
            .where(subscriptions.c.subscriber_id.in_(ids), subscriptions.c.status == "active")
            .values(status="unsubscribed", updated_at=now)
        )
