"""Questions to the ledger in the domain's words: digest issues and their delivery rows.

(The send loop's own statements still live in ``delivery.send`` and ``confirm``; they move
here as the ledger gets its claims.)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from publisher.store.schema import archive, deliveries, issues, subscriptions


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
