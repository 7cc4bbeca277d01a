"""Subscribers and their lists: add, remove, request and confirm, list, count."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import and_, func, literal, select, update
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
    timezone: str | None = None


Added = Literal["added", "unchanged", "unsubscribed", "suppressed"]


def add_subscriber(
    db: Connection,
    address: str,
    name: str,
    list_name: str,
    now: float,
    resubscribe: bool = False,
    timezone: str | None = None,
) -> Added:
    """Subscribe ``address`` (already validated) to a list. A known address keeps its id
    and public id. What came of it:

    * ``added``: subscribed now (new, or pending until now);
    * ``unchanged``: it was active already;
    * ``unsubscribed``: it unsubscribed from this list, and stays so: consent is given
      back only by the person (``resubscribe``: the web form, or an operator who says the
      person asked again), never by an import;
    * ``suppressed``: the address is suppressed (it bounced for good); not subscribed.

    A ``timezone`` given (already validated) becomes theirs, whatever came of the rest.
    """
    key = address.lower()
    row = db.execute(
        select(subscribers.c.id, subscribers.c.name, subscribers.c.suppressed_at).where(
            subscribers.c.key == key
        )
    ).first()
    if row is not None and timezone is not None:
        db.execute(subscribers.update().where(subscribers.c.id == row.id).values(timezone=timezone))
    if row is None:
        inserted = db.execute(
            subscribers.insert().values(
                address=address,
                key=key,
                name=name,
                public_id=secrets.token_urlsafe(12),
                created_at=now,
                hard_bounces=0,
                timezone=timezone,
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
            subscribers.c.timezone,
        )
        .join(subscriptions, subscriptions.c.subscriber_id == subscribers.c.id)
        .where(subscriptions.c.list == list_name)
        .order_by(subscribers.c.id)
    )
    for row in db.execute(query):
        yield Member(row.id, row.address, row.name, row.public_id, row.status,
                     row.suppressed_at is not None, row.timezone)  # fmt: skip


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
    db: Connection,
    address: str,
    name: str,
    lists: list[str],
    now: float,
    timezone: str | None = None,
) -> tuple[int, bool]:
    """Record a double opt-in request: ``pending`` for each list not already active.
    Returns the subscriber's id and whether a confirmation mail should go out (not when
    nothing is pending, nor within an hour of the last one).

    The form's ``timezone`` is kept for a new address, or one that has none yet: anybody
    can type an address into the form, so a known subscriber's zone changes only on their
    preferences page."""
    key = address.lower()
    row = db.execute(select(subscribers).where(subscribers.c.key == key)).first()
    if row is None:
        inserted = db.execute(
            subscribers.insert().values(
                address=address, key=key, name=name, public_id=secrets.token_urlsafe(12),
                created_at=now, hard_bounces=0, timezone=timezone,
            )
        ).inserted_primary_key  # fmt: skip
        assert inserted is not None
        subscriber_id, last_sent = int(inserted[0]), None
    else:
        subscriber_id, last_sent = row.id, row.confirm_sent_at
        if row.timezone is None and timezone is not None:
            db.execute(
                subscribers.update().where(subscribers.c.id == row.id).values(timezone=timezone)
            )
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


def zone_of_subscriber(db: Connection, public_id: str) -> str | None:
    """The subscriber's time zone (None: none given, or no such subscriber)."""
    query = select(subscribers.c.timezone).where(subscribers.c.public_id == public_id)
    found = db.execute(query).scalar()
    return None if found is None else str(found)


def set_zone(db: Connection, public_id: str, timezone: str | None) -> None:
    """The preferences page: the subscriber's time zone (already validated; None: none)."""
    db.execute(
        subscribers.update().where(subscribers.c.public_id == public_id).values(timezone=timezone)
    )


def zones_present(db: Connection, list_name: str) -> list[str | None]:
    """The time zones the list's active, unsuppressed members have (None: some have none).
    One statement that skips along the zone index from one zone to the next (a loose index
    scan): the cost is the number of zones (a few hundred), not of subscribers."""
    member = (
        select(literal(1))
        .select_from(subscribers.join(subscriptions,
                                      subscriptions.c.subscriber_id == subscribers.c.id))
        .where(
            subscriptions.c.list == list_name,
            subscriptions.c.status == "active",
            subscribers.c.suppressed_at.is_(None),
        )
    )  # fmt: skip
    later = subscribers.alias("later")
    walk = select(func.min(subscribers.c.timezone).label("zone")).cte("zones", recursive=True)
    step = select(func.min(later.c.timezone)).where(later.c.timezone > walk.c.zone)
    walk = walk.union_all(select(step.scalar_subquery()).where(walk.c.zone.is_not(None)))
    present = select(walk.c.zone).where(
        walk.c.zone.is_not(None),
        member.where(subscribers.c.timezone == walk.c.zone).exists(),
    )
    found: list[str | None] = []
    if db.execute(member.where(subscribers.c.timezone.is_(None)).limit(1)).first() is not None:
        found.append(None)
    found.extend(str(zone) for zone in db.execute(present.order_by(walk.c.zone)).scalars())
    return found


def zone_counts(db: Connection, list_name: str) -> dict[str | None, int]:
    """How many active, unsuppressed members of the list are in each time zone (None:
    those without one): what a local-time issue's rows fall due by."""
    rows = db.execute(
        select(subscribers.c.timezone, func.count())
        .join(subscriptions, subscriptions.c.subscriber_id == subscribers.c.id)
        .where(
            subscriptions.c.list == list_name,
            subscriptions.c.status == "active",
            subscribers.c.suppressed_at.is_(None),
        )
        .group_by(subscribers.c.timezone)
    ).all()
    return {None if zone is None else str(zone): int(count) for zone, count in rows}


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
