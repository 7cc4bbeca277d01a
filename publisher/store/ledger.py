"""Questions to the ledger in the domain's words: digest issues and their delivery rows.

Every statement about issues and their delivery rows is here, the hourly issues of
confirmation mails included; the send loop calls these and records what they answer.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, func, literal, select, update
from sqlalchemy.engine import Connection

from publisher.store.schema import archive, deliveries, issues, subscribers, subscriptions


def sent_issues(db: Connection, digest: str) -> list[tuple[int, float]]:
    """Number and window end of every finished issue of ``digest``, newest first."""
    rows = db.execute(
        select(issues.c.number, issues.c.window_end)
        .where(issues.c.digest == digest, issues.c.status == "done")
        .order_by(issues.c.number.desc())
    ).all()
    return [(int(row.number), float(row.window_end)) for row in rows]


def find_issue(db: Connection, digest: str, number: int) -> Any | None:
    """The row of issue ``number`` of ``digest``, or None."""
    return db.execute(
        select(issues).where(issues.c.digest == digest, issues.c.number == number)
    ).first()


def kept_page(db: Connection, issue_id: int) -> str | None:
    """The web page kept for an issue when it was composed, if any."""
    html: str | None = db.execute(
        select(archive.c.html).where(archive.c.issue_id == issue_id)
    ).scalar()
    return html


def latest_issues(db: Connection, digest: str, count: int) -> list[Any]:
    """The newest ``count`` issue rows of ``digest``."""
    return list(
        db.execute(
            select(issues).where(issues.c.digest == digest)
            .order_by(issues.c.number.desc()).limit(count)
        ).all()
    )  # fmt: skip


def row_counts(db: Connection, issue_id: int) -> dict[str, int]:
    """How many delivery rows of an issue are in each status."""
    counted = db.execute(
        select(deliveries.c.status, func.count())
        .where(deliveries.c.issue_id == issue_id)
        .group_by(deliveries.c.status)
    ).all()
    return {str(status): int(count) for status, count in counted}


def row_counts_since(db: Connection, digest: str, since: float) -> dict[str, int]:
    """Delivery rows by status over the issues of ``digest`` whose window ends after
    ``since``."""
    counted = db.execute(
        select(deliveries.c.status, func.count())
        .join(issues, issues.c.id == deliveries.c.issue_id)
        .where(issues.c.digest == digest, issues.c.window_end > since)
        .group_by(deliveries.c.status)
    ).all()
    return {str(status): int(count) for status, count in counted}


def waiting_rows(db: Connection, issue_id: int) -> int:
    """Rows of an issue still to be sent (pending or deferred)."""
    return int(
        db.execute(
            select(func.count()).where(
                deliveries.c.issue_id == issue_id,
                deliveries.c.status.in_(("pending", "deferred")),
            )
        ).scalar_one()
    )


def has_unfinished_issue(db: Connection, digest: str) -> bool:
    """Whether an issue of ``digest`` is not done yet (sending, or paused)."""
    row = db.execute(
        select(issues.c.id).where(issues.c.digest == digest, issues.c.status != "done")
    ).first()
    return row is not None


def unconfirmed_people(db: Connection) -> int:
    """People with a subscription waiting for its confirmation."""
    return int(
        db.execute(
            select(func.count(func.distinct(subscriptions.c.subscriber_id))).where(
                subscriptions.c.status == "pending"
            )
        ).scalar_one()
    )


def sent_since(db: Connection, since: float) -> int:
    """Messages sent (over every issue, confirmations too) since ``since``: what the hourly
    and daily rate limits count, so they hold across restarts."""
    return int(
        db.execute(
            select(func.count()).where(
                deliveries.c.status == "sent", deliveries.c.updated_at >= since
            )
        ).scalar_one()
    )


# --- an issue and its rows, for the send loop ----------------------------------------------


def unfinished_issue(db: Connection, digest: str) -> Any | None:
    """The oldest issue of ``digest`` not done yet, or None."""
    return db.execute(
        select(issues).where(issues.c.digest == digest, issues.c.status != "done")
        .order_by(issues.c.number).limit(1)
    ).first()  # fmt: skip


def last_issue(db: Connection, digest: str) -> Any | None:
    """Number and window end of the newest issue of ``digest``, or None."""
    return db.execute(
        select(issues.c.number, issues.c.window_end)
        .where(issues.c.digest == digest).order_by(issues.c.number.desc()).limit(1)
    ).first()  # fmt: skip


def has_period(db: Connection, digest: str, period: float) -> bool:
    """Whether ``digest`` has an issue for the scheduled ``period``."""
    found = db.execute(
        select(issues.c.id).where(issues.c.digest == digest, issues.c.period == period)
    ).first()
    return found is not None


def last_period(db: Connection, digest: str) -> float | None:
    """The latest scheduled period of ``digest`` that has an issue."""
    value = db.execute(select(func.max(issues.c.period)).where(issues.c.digest == digest)).scalar()
    return None if value is None else float(value)


def create_issue(
    db: Connection,
    digest: str,
    list_name: str,
    number: int,
    window: tuple[float | None, float],
    created_at: float,
    period: float | None,
) -> int:
    """A new issue and one pending row for every active, unsuppressed member of the list,
    in one transaction (the caller's): they exist together or not at all. Raises
    IntegrityError when another process made this number (or period) first."""
    inserted = db.execute(
        issues.insert().values(
            digest=digest, number=number, window_start=window[0], window_end=window[1],
            created_at=created_at, status="sending", period=period,
        )
    ).inserted_primary_key  # fmt: skip
    assert inserted is not None
    issue_id = int(inserted[0])
    members = (
        select(literal(issue_id), subscribers.c.id, literal("pending"), literal(0), literal(0.0))
        .join(subscriptions, subscriptions.c.subscriber_id == subscribers.c.id)
        .where(
            subscriptions.c.list == list_name,
            subscriptions.c.status == "active",
            subscribers.c.suppressed_at.is_(None),
        )
    )
    columns = ["issue_id", "subscriber_id", "status", "attempts", "next_attempt_at"]
    db.execute(deliveries.insert().from_select(columns, members))
    return issue_id


def keep_page(db: Connection, issue_id: int, html: str) -> None:
    """Keep an issue's web page (raises IntegrityError when one is kept already)."""
    db.execute(archive.insert().values(issue_id=issue_id, html=html))


def set_issue_status(db: Connection, issue_id: int, status: str) -> None:
    db.execute(update(issues).where(issues.c.id == issue_id).values(status=status))


def issue_status(db: Connection, issue_id: int) -> str:
    return str(db.execute(select(issues.c.status).where(issues.c.id == issue_id)).scalar_one())


def due_rows(
    db: Connection, issue_id: int, now: float, limit: int, only: int | None = None
) -> list[Any]:
    """Up to ``limit`` rows of the issue waiting to be sent (pending, or deferred and due at
    ``now``; with ``only``, that subscriber's row whenever it is due), with the address."""
    which = (
        deliveries.c.subscriber_id == only if only is not None
        else deliveries.c.next_attempt_at <= now
    )  # fmt: skip
    return list(
        db.execute(
            select(
                deliveries.c.subscriber_id, deliveries.c.attempts, deliveries.c.first_attempt_at,
                subscribers.c.address, subscribers.c.name, subscribers.c.public_id,
                subscribers.c.suppressed_at,
            )
            .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
            .where(
                deliveries.c.issue_id == issue_id,
                deliveries.c.status.in_(("pending", "deferred")),
                which,
            )
            .order_by(deliveries.c.subscriber_id)
            .limit(limit)
        ).all()
    )  # fmt: skip


# Prepared once: building SQLAlchemy statements per row costs more than sending the mail.
_RECORD = (
    update(deliveries)
    .where(
        deliveries.c.issue_id == bindparam("issue"),
        deliveries.c.subscriber_id == bindparam("subscriber"),
    )
    .values(
        status=bindparam("status"),
        attempts=bindparam("attempts"),
        first_attempt_at=bindparam("first"),
        next_attempt_at=bindparam("due"),
        code=bindparam("code"),
        reply=bindparam("reply"),
        provider_id=bindparam("provider"),
        updated_at=bindparam("at"),
    )
)


def record(
    db: Connection,
    issue_id: int,
    subscriber_id: int,
    status: str,
    attempts: int,
    first: float,
    at: float,
    due: float = 0.0,
    code: int | None = None,
    reply: str | None = None,
    provider: str | None = None,
) -> None:
    """What one attempt at one row came to."""
    db.execute(
        _RECORD,
        {
            "issue": issue_id, "subscriber": subscriber_id, "status": status,
            "attempts": attempts, "first": first, "due": due, "code": code, "reply": reply,
            "provider": provider, "at": at,
        },
    )  # fmt: skip


def count_hard_bounce(
    db: Connection, subscriber_id: int, limit: int, reply: str, now: float
) -> None:
    """One more hard bounce of an address; suppressed from the ``limit``-th on."""
    db.execute(
        update(subscribers).where(subscribers.c.id == subscriber_id)
        .values(hard_bounces=subscribers.c.hard_bounces + 1)
    )  # fmt: skip
    db.execute(
        update(subscribers)
        .where(subscribers.c.id == subscriber_id, subscribers.c.hard_bounces >= limit,
               subscribers.c.suppressed_at.is_(None))
        .values(suppressed_at=now, suppressed_reason=reply)
    )  # fmt: skip


# --- the hourly issues of confirmation mails ----------------------------------------------


def create_empty_issue(
    db: Connection, digest: str, number: int, window: tuple[float, float], created_at: float
) -> int:
    """An issue without rows (rows are added one by one, as confirmation mails are asked
    for). Raises IntegrityError when another process made it first."""
    inserted = db.execute(
        issues.insert().values(
            digest=digest, number=number, window_start=window[0], window_end=window[1],
            created_at=created_at, status="sending",
        )
    ).inserted_primary_key  # fmt: skip
    assert inserted is not None
    return int(inserted[0])


def add_row(db: Connection, issue_id: int, subscriber_id: int, due: float) -> bool:
    """A pending row for one recipient of an issue, due at ``due``; False if it has one."""
    exists = db.execute(
        select(deliveries.c.status).where(
            deliveries.c.issue_id == issue_id, deliveries.c.subscriber_id == subscriber_id
        )
    ).first()
    if exists is not None:
        return False
    db.execute(
        deliveries.insert().values(
            issue_id=issue_id, subscriber_id=subscriber_id, status="pending", attempts=0,
            next_attempt_at=due,
        )
    )  # fmt: skip
    return True


def due_hours(db: Connection, digest: str, now: float) -> list[Any]:
    """Close the open issues of ``digest`` that wait for nothing (a crash can leave them
    open), and return those with a row due at ``now`` (id, number, window), oldest first.

    Only the rows of open issues are looked at: the index leads with issue_id, and a
    digest issue being sent may have a million rows waiting."""
    waiting = deliveries.c.status.in_(("pending", "deferred"))
    open_issues = select(issues.c.id).where(issues.c.digest == digest, issues.c.status != "done")
    mine = deliveries.c.issue_id.in_(open_issues)
    busy = select(deliveries.c.issue_id).where(mine, waiting).distinct()
    due = select(deliveries.c.issue_id).where(mine, waiting, deliveries.c.next_attempt_at <= now)
    db.execute(
        update(issues)
        .where(issues.c.id.in_(open_issues), issues.c.id.not_in(busy))
        .values(status="done")
    )
    return list(
        db.execute(
            select(issues.c.id, issues.c.number, issues.c.window_start, issues.c.window_end)
            .where(issues.c.id.in_(open_issues), issues.c.id.in_(due))
            .order_by(issues.c.number)
        ).all()
    )  # fmt: skip
