"""What the operator wants to know of each digest: list size, next run, the last issues
with their ledger counts — never an address. Shared by `publisher status` and the web
status page."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from publisher import store
from publisher.config import Digest, Publication

STATUSES = ("sent", "deferred", "failed", "pending", "skipped")


def next_run(pub: Publication, digest: Digest, now: datetime) -> str | None:
    from publisher.scheduler.triggers import runs, trigger

    if digest.schedule is None:
        return None
    upcoming = next(runs(trigger(pub, digest.schedule), now, now + timedelta(days=400)), None)
    return None if upcoming is None else upcoming.isoformat()


def digest_overview(
    db: Connection, pub: Publication, digest: Digest, now: datetime
) -> dict[str, Any]:
    rows = db.execute(
        select(store.issues)
        .where(store.issues.c.digest == digest.name)
        .order_by(store.issues.c.number.desc())
        .limit(5)
    ).all()
    recent: list[dict[str, Any]] = []
    for row in rows:
        counted = db.execute(
            select(store.deliveries.c.status, func.count())
            .where(store.deliveries.c.issue_id == row.id)
            .group_by(store.deliveries.c.status)
        ).all()
        counts: dict[str, int] = {status: count for status, count in counted}
        end = store.moment(row.window_end)
        recent.append(
            {
                "number": row.number,
                "status": row.status,
                "window_end": None if end is None else end.isoformat(),
                **{key: counts.get(key, 0) for key in STATUSES},
            }
        )
    return {
        "digest": digest.name,
        "list": digest.list_name,
        "subscribers": store.count_active(db, digest.list_name),
        "next_run": next_run(pub, digest, now),
        "issues": recent,
    }


def confirmation_overview(db: Connection, now: datetime) -> dict[str, int]:
    """The double opt-in of the last 7 days: its mails by ledger status, and the people
    who have not confirmed yet."""
    from publisher.confirm import CONFIRMATIONS

    since = store.epoch(now - timedelta(days=7))
    counted = db.execute(
        select(store.deliveries.c.status, func.count())
        .join(store.issues, store.issues.c.id == store.deliveries.c.issue_id)
        .where(store.issues.c.digest == CONFIRMATIONS, store.issues.c.window_end > since)
        .group_by(store.deliveries.c.status)
    ).all()
    counts: dict[str, int] = {status: count for status, count in counted}
    waiting = db.execute(
        select(func.count(func.distinct(store.subscriptions.c.subscriber_id))).where(
            store.subscriptions.c.status == "pending"
        )
    ).scalar_one()
    return {**{key: counts.get(key, 0) for key in STATUSES[:4]}, "unconfirmed": int(waiting)}


def confirmation_line(entry: dict[str, int]) -> str:
    counts = ", ".join(f"{key} {entry[key]}" for key in STATUSES[:4])
    return f"confirmation mails, last 7 days: {counts}; {entry['unconfirmed']} not confirmed yet"
