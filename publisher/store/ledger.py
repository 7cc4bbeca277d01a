"""Questions to the ledger in the domain's words: digest issues and their delivery rows.

Every statement about issues and their delivery rows is here, the hourly issues of
confirmation mails included; the send loop calls these and records what they answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import (
    Column,
    Float,
    MetaData,
    String,
    Table,
    bindparam,
    case,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from publisher.store.schema import (
    archive,
    deliveries,
    issue_articles,
    issues,
    subscribers,
    subscriptions,
)

# Rows not finished: to be sent, to be retried, or claimed by a sender right now (a claimed
# row's next_attempt_at is the end of its lease: when it comes, the row is due again).
WAITING = ("pending", "deferred", "sending")


def sent_issues(db: Connection, digest: str) -> list[tuple[int, float, str | None]]:
    """Number, moment composed and subject (None for an issue from before subjects were
    kept) of every finished issue of ``digest``, newest first."""
    rows = db.execute(
        select(issues.c.number, issues.c.created_at, issues.c.subject)
        .where(issues.c.digest == digest, issues.c.status == "done")
        .order_by(issues.c.number.desc())
    ).all()
    return [(int(row.number), float(row.created_at), row.subject) for row in rows]


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


def due_rows(db: Connection, issue_id: int, now: float) -> int:
    """How many rows of the issue are due at ``now`` (waiting, and their time has come)."""
    c = deliveries.c
    return int(
        db.execute(
            select(func.count()).where(
                c.issue_id == issue_id, c.status.in_(WAITING), c.next_attempt_at <= now
            )
        ).scalar_one()
    )


def reasons(db: Connection, issue_id: int, limit: int = 3) -> list[tuple[str, str, int]]:
    """Why the issue's rows are deferred or failed: (status, the last reply, how many rows
    have it), the most frequent first."""
    c = deliveries.c
    count = func.count().label("rows")
    query = (
        select(c.status, c.reply, count)
        .where(c.issue_id == issue_id, c.status.in_(("deferred", "failed")), c.reply.is_not(None))
        .group_by(c.status, c.reply)
        .order_by(count.desc(), c.status, c.reply)
        .limit(limit)
    )
    return [(str(status), str(reply), int(rows)) for status, reply, rows in db.execute(query)]


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


def unconfirmed_people(db: Connection) -> int:
    """People with a subscription waiting for its confirmation."""
    return int(
        db.execute(
            select(func.count(func.distinct(subscriptions.c.subscriber_id))).where(
                subscriptions.c.status == "pending"
            )
        ).scalar_one()
    )


# --- an issue and its rows, for the send loop ----------------------------------------------


def open_issues(db: Connection, digest: str) -> list[Any]:
    """Every issue of ``digest`` not done yet (sending or paused), oldest first."""
    return list(
        db.execute(
            select(issues).where(issues.c.digest == digest, issues.c.status != "done")
            .order_by(issues.c.number)
        ).all()
    )  # fmt: skip


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
    articles: Sequence[str] = (),
    passed_over: Sequence[str] = (),
    due: Mapping[str | None, float] | None = None,
) -> int:
    """A new issue, the slugs of its ``articles`` (in order) and of those it ``passed
    over`` for good, and one pending row for every active, unsuppressed member of the
    list, in one transaction (the caller's): they exist together or not at all. Raises
    IntegrityError when another process made this number (or period) first.

    Each row is due at once, or with ``due`` at its subscriber's zone's time (the key
    None: those without a zone, and any zone it does not name)."""
    inserted = db.execute(
        issues.insert().values(
            digest=digest, number=number, window_start=window[0], window_end=window[1],
            created_at=created_at, status="sending", period=period,
        )
    ).inserted_primary_key  # fmt: skip
    assert inserted is not None
    issue_id = int(inserted[0])
    held = [(slug, 1) for slug in articles] + [(slug, 0) for slug in passed_over]
    if held:
        db.execute(
            issue_articles.insert(),
            [{"issue_id": issue_id, "slug": slug, "position": position, "included": included}
             for position, (slug, included) in enumerate(held)],
        )  # fmt: skip
    first: ColumnElement[Any] = literal(0.0)
    joined = subscribers.join(subscriptions, subscriptions.c.subscriber_id == subscribers.c.id)
    zoned = {zone: at for zone, at in (due or {}).items() if zone is not None}
    if zoned:
        # One statement whatever the number of zones: the zones' due times in a temporary
        # table of a few hundred rows, joined to the subscribers by its key (a VALUES
        # list has no index: SQLite would scan it for every subscriber).
        _ZONE_DUE.create(db)
        db.execute(_ZONE_DUE.insert(), [{"zone": z, "due": at} for z, at in zoned.items()])
        joined = joined.outerjoin(_ZONE_DUE, _ZONE_DUE.c.zone == subscribers.c.timezone)
        first = func.coalesce(_ZONE_DUE.c.due, literal((due or {}).get(None, 0.0)))
    elif due:
        first = literal(due.get(None, 0.0))
    members = (
        select(literal(issue_id), subscribers.c.id, literal("pending"), literal(0), first)
        .select_from(joined)
        .where(
            subscriptions.c.list == list_name,
            subscriptions.c.status == "active",
            subscribers.c.suppressed_at.is_(None),
        )
    )
    columns = ["issue_id", "subscriber_id", "status", "attempts", "next_attempt_at"]
    db.execute(deliveries.insert().from_select(columns, members))
    if zoned:
        _ZONE_DUE.drop(db)
    return issue_id


# Each zone's due time while an issue's rows are written (see create_issue); the caller's
# transaction holds it, so a failed issue leaves none behind.
_ZONE_DUE = Table(
    "publisher_zone_due", MetaData(),
    Column("zone", String(64), primary_key=True), Column("due", Float, nullable=False),
    prefixes=["TEMPORARY"],
)  # fmt: skip


class Sent(NamedTuple):
    """What a digest's issues have sent: the slugs they recorded, and the moment up to
    which the issues from before articles were recorded took every article (None: none
    such)."""

    slugs: frozenset[str]
    until: float | None


def sent_articles(db: Connection, digest: str) -> Sent:
    """The articles the issues of ``digest`` hold or passed over, whatever their status:
    an issue still being sent has its articles already."""
    mine = select(issues.c.id).where(issues.c.digest == digest)
    slugs = db.execute(
        select(issue_articles.c.slug).where(issue_articles.c.issue_id.in_(mine))
    ).scalars()
    until = db.execute(
        select(func.max(issues.c.articles_until)).where(issues.c.digest == digest)
    ).scalar()
    return Sent(frozenset(str(slug) for slug in slugs), None if until is None else float(until))


def issue_slugs(db: Connection, issue_id: int) -> list[str] | None:
    """The slugs of the articles an issue holds, in their order; None for an issue from
    before they were recorded (its articles are those dated in its window)."""
    legacy = db.execute(select(issues.c.articles_until).where(issues.c.id == issue_id)).scalar()
    if legacy is not None:
        return None
    return [
        str(slug)
        for slug in db.execute(
            select(issue_articles.c.slug)
            .where(issue_articles.c.issue_id == issue_id, issue_articles.c.included == 1)
            .order_by(issue_articles.c.position)
        ).scalars()
    ]


def keep_page(db: Connection, issue_id: int, html: str, subject: str) -> None:
    """Keep an issue's web page and subject (raises IntegrityError when a page is kept
    already)."""
    db.execute(archive.insert().values(issue_id=issue_id, html=html))
    db.execute(update(issues).where(issues.c.id == issue_id).values(subject=subject[:250]))


def set_issue_status(
    db: Connection, issue_id: int, status: str, reason: str | None = None, at: float | None = None
) -> None:
    """An issue's status; ``reason`` and ``at`` say why and when a paused one paused."""
    db.execute(
        update(issues).where(issues.c.id == issue_id)
        .values(status=status, paused_reason=reason, paused_at=at)
    )  # fmt: skip


def issue_status(db: Connection, issue_id: int) -> str:
    return str(db.execute(select(issues.c.status).where(issues.c.id == issue_id)).scalar_one())


def claim(
    db: Connection,
    issue_id: int,
    owner: str,
    now: float,
    lease_until: float,
    limit: int,
    list_name: str | None,
    only: int | None = None,
) -> list[Any]:
    """Claim up to ``limit`` due rows of the issue for ``owner`` until ``lease_until``, in
    the caller's transaction, and return those still to be sent, with the address.

    Due: pending or deferred and due at ``now``, or claimed by a sender whose lease has
    ended. The claim is one ``UPDATE ... WHERE ... IN (SELECT ... FOR UPDATE SKIP LOCKED)
    RETURNING``: on PostgreSQL concurrent senders skip each other's rows; on SQLite the
    statement holds the database's write lock. Either way no row is claimed twice.

    The subscription is read here, not when the issue was composed: a claimed row whose
    address has since been unsubscribed from ``list_name`` (for confirmation mails, None:
    has nothing left to confirm) or suppressed is marked ``skipped`` and not returned.
    With ``only``, just that subscriber's row, due or not, unless another sender holds it.
    """
    if issue_status(db, issue_id) == "paused":
        return []  # another sender paused it: nobody sends more until a run resumes it
    c = deliveries.c
    which: ColumnElement[bool]
    if only is not None:
        which = (c.subscriber_id == only) & (
            c.status.in_(("pending", "deferred")) | (c.next_attempt_at <= now)
        )
    else:
        which = c.next_attempt_at <= now
    # A materialized CTE: the locking subquery runs once. (Written as `IN (SELECT ...
    # LIMIT n FOR UPDATE SKIP LOCKED)`, PostgreSQL may run it again for each row and
    # claim the whole issue.)
    # No ORDER BY: the rows come in the order of the index deliveries_due (issue, status,
    # due time), and the scan stops at `limit`. Sorting by subscriber made every claim
    # read every due row of the issue: a million-row issue, a million reads a claim.
    due = (
        select(c.subscriber_id)
        .where(c.issue_id == issue_id, c.status.in_(WAITING), which)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("due")
        .prefix_with("MATERIALIZED")
    )
    claimed = db.execute(
        update(deliveries)
        .where(c.issue_id == issue_id, c.subscriber_id.in_(select(due.c.subscriber_id)))
        .values(status="sending", lease_owner=owner, next_attempt_at=lease_until)
        .returning(c.subscriber_id, c.attempts, c.first_attempt_at)
    ).all()
    if not claimed:
        return []
    # Rows are read by position below: by name, a claim of 500 spent more time on
    # attribute lookups than in the database.
    ids = [row[0] for row in claimed]
    if list_name is not None:
        consent = (
            select(literal(1)).where(
                subscriptions.c.subscriber_id == subscribers.c.id,
                subscriptions.c.list == list_name, subscriptions.c.status == "active",
            ).exists()
        )  # fmt: skip
    else:
        consent = (
            select(literal(1)).where(
                subscriptions.c.subscriber_id == subscribers.c.id,
                subscriptions.c.status == "pending",
            ).exists()
        )  # fmt: skip
    people = {
        row[0]: tuple(row)
        for row in db.execute(
            select(
                subscribers.c.id, subscribers.c.address, subscribers.c.name,
                subscribers.c.public_id, subscribers.c.hard_bounces, subscribers.c.timezone,
                (subscribers.c.suppressed_at.is_(None) & consent).label("allowed"),
            ).where(subscribers.c.id.in_(ids))
        )
    }  # fmt: skip
    out, refused = [], []
    for subscriber_id, attempts, first in claimed:
        _, address, name, public_id, hard_bounces, zone, allowed = people[subscriber_id]
        if allowed:
            out.append(Claimed(subscriber_id, int(attempts), first, address, name, public_id,
                               int(hard_bounces), zone))  # fmt: skip
        else:
            refused.append(subscriber_id)
    if refused:
        db.execute(
            update(deliveries)
            .where(c.issue_id == issue_id, c.subscriber_id.in_(refused))
            .values(status="skipped", lease_owner=None, next_attempt_at=0.0, updated_at=now)
        )
    return out


class Claimed(NamedTuple):
    """A claimed row and its recipient."""

    subscriber_id: int
    attempts: int
    first_attempt_at: float | None
    address: str
    name: str
    public_id: str
    hard_bounces: int
    timezone: str | None = None


def count_failure(db: Connection, issue_id: int) -> int:
    """One more failed attempt in a row at the issue, whichever sender made it; how many
    there are now."""
    return int(
        db.execute(
            update(issues).where(issues.c.id == issue_id)
            .values(failures_in_a_row=issues.c.failures_in_a_row + 1)
            .returning(issues.c.failures_in_a_row)
        ).scalar_one()
    )  # fmt: skip


def failures_in_a_row(db: Connection, issue_id: int) -> int:
    return int(
        db.execute(select(issues.c.failures_in_a_row).where(issues.c.id == issue_id)).scalar_one()
    )


def reset_failures(db: Connection, issue_id: int) -> None:
    """A message was accepted: the issue's failures in a row start again from 0."""
    db.execute(
        update(issues)
        .where(issues.c.id == issue_id, issues.c.failures_in_a_row > 0)
        .values(failures_in_a_row=0)
    )


def renew(db: Connection, issue_id: int, owner: str, lease_until: float) -> None:
    """Lengthen ``owner``'s lease on the rows of the issue it still holds."""
    db.execute(
        update(deliveries)
        .where(deliveries.c.issue_id == issue_id, deliveries.c.lease_owner == owner,
               deliveries.c.status == "sending")
        .values(next_attempt_at=lease_until)
    )  # fmt: skip


def release(
    db: Connection, issue_id: int, owner: str, now: float, subscriber_id: int | None = None
) -> int:
    """Give back the rows of the issue ``owner`` claimed and did not send (or just that
    subscriber's, whose attempt was not its own: the server refused the sender), due at
    ``now``, pending or deferred as they were. How many."""
    c = deliveries.c
    which = [c.issue_id == issue_id, c.lease_owner == owner, c.status == "sending"]
    if subscriber_id is not None:
        which.append(c.subscriber_id == subscriber_id)
    result = db.execute(
        update(deliveries)
        .where(*which)
        .values(
            status=case((c.attempts == 0, "pending"), else_="deferred"),
            lease_owner=None, next_attempt_at=now,
        )
    )  # fmt: skip
    return int(result.rowcount)


def owners(db: Connection, issue_id: int) -> list[str]:
    """The senders holding rows of the issue."""
    return [
        str(owner)
        for owner in db.execute(
            select(deliveries.c.lease_owner)
            .where(deliveries.c.issue_id == issue_id, deliveries.c.status == "sending")
            .distinct()
        ).scalars()
        if owner is not None
    ]


def live_senders(db: Connection, now: float, besides: str = "") -> int:
    """How many senders other than ``besides`` hold an unexpired claim on any row, over
    every issue."""
    return int(
        db.execute(
            select(func.count(func.distinct(deliveries.c.lease_owner))).where(
                deliveries.c.status == "sending",
                deliveries.c.next_attempt_at > now,
                deliveries.c.lease_owner != besides,
            )
        ).scalar_one()
    )


def sent_or_claimed(db: Connection, since: float, now: float) -> int:
    """Messages sent since ``since`` and rows some sender holds an unexpired claim on
    (this one too), counted in one statement: what the hourly and daily limits count.
    One statement is one snapshot: counted apart, a sender recording its batch between
    the two counts (claimed rows becoming sent ones) made that batch vanish from both,
    and a claim took that many more than the limit."""
    c = deliveries.c
    sent = (c.status == "sent") & (c.updated_at > since)
    claimed = (c.status == "sending") & (c.next_attempt_at > now)
    return int(db.execute(select(func.count()).where(sent | claimed)).scalar_one())


def not_due_yet(db: Connection, issue_id: int, now: float) -> int:
    """Rows of the issue never tried whose first time has not come (a local hour, the end
    of quiet hours)."""
    found = db.execute(
        select(func.count()).where(
            deliveries.c.issue_id == issue_id,
            deliveries.c.status == "pending",
            deliveries.c.attempts == 0,
            deliveries.c.next_attempt_at > now,
        )
    ).scalar()
    return int(found or 0)


def due_times(db: Connection, issue_id: int, until: float) -> list[tuple[float, int]]:
    """(due time, rows) of the issue's rows waiting to be sent, due by ``until``: as many
    pairs as distinct due times (a local-time issue's are its zones' hours), not rows."""
    found = db.execute(
        select(deliveries.c.next_attempt_at, func.count())
        .where(
            deliveries.c.issue_id == issue_id,
            deliveries.c.status.in_(("pending", "deferred")),
            deliveries.c.next_attempt_at <= until,
        )
        .group_by(deliveries.c.next_attempt_at)
    ).all()
    return [(float(at), int(rows)) for at, rows in found]


def next_due(db: Connection, paused_wait: float) -> float | None:
    """When the earliest waiting row of any issue being sent (digests and confirmation
    mails) is due, or a paused issue is to be tried again: ``paused_wait`` after its pause,
    and not before a row of it is due. What `publisher run` wakes for, whatever the
    schedules say."""
    sending = select(issues.c.id).where(issues.c.status == "sending")
    row = db.execute(
        select(func.min(deliveries.c.next_attempt_at)).where(
            deliveries.c.issue_id.in_(sending), deliveries.c.status.in_(WAITING)
        )
    ).scalar()
    found = [float(row)] if row is not None else []
    paused = db.execute(
        select(issues.c.paused_at, func.min(deliveries.c.next_attempt_at))
        .join(deliveries, deliveries.c.issue_id == issues.c.id)
        .where(issues.c.status == "paused", deliveries.c.status.in_(WAITING))
        .group_by(issues.c.id, issues.c.paused_at)
    ).all()  # fmt: skip
    for paused_at, first_due in paused:
        found.append(max(float(paused_at or 0.0) + paused_wait, float(first_due)))
    return min(found, default=None)


# Prepared once: building SQLAlchemy statements per row costs more than sending the mail.
_RECORD = (
    update(deliveries)
    .where(
        deliveries.c.issue_id == bindparam("issue"),
        deliveries.c.subscriber_id == bindparam("subscriber"),
        # Only while the claim is ours: a sender that outlived its lease records nothing
        # over the row's new owner.
        deliveries.c.lease_owner == bindparam("owner"),
    )
    .values(
        lease_owner=None,
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
    owner: str,
    status: str,
    attempts: int,
    first: float | None,
    at: float,
    due: float = 0.0,
    code: int | None = None,
    reply: str | None = None,
    provider: str | None = None,
) -> None:
    """What one attempt at one claimed row came to; the claim ends."""
    db.execute(
        _RECORD,
        {
            "issue": issue_id, "subscriber": subscriber_id, "owner": owner, "status": status,
            "attempts": attempts, "first": first, "due": due, "code": code, "reply": reply,
            "provider": provider, "at": at,
        },
    )  # fmt: skip


def record_sent(
    db: Connection,
    issue_id: int,
    owner: str,
    rows: Sequence[tuple[int, int, float, float, str]],
) -> None:
    """Several claimed rows sent, in one statement run for each: (subscriber, attempts,
    first attempt, when, the provider's id). Written for the driver directly: through
    the expression language, binding the parameters cost four times the statement."""
    if not rows:
        return
    mark = "?" if db.dialect.paramstyle == "qmark" else "%s"
    statement = (
        f"UPDATE {deliveries.name} SET lease_owner = NULL, status = 'sent', "
        f"attempts = {mark}, first_attempt_at = {mark}, next_attempt_at = 0, code = 250, "
        f"reply = NULL, provider_id = {mark}, updated_at = {mark} "
        f"WHERE issue_id = {mark} AND subscriber_id = {mark} AND lease_owner = {mark}"
    )
    db.exec_driver_sql(
        statement,
        [(attempts, first, provider, at, issue_id, subscriber, owner)
         for subscriber, attempts, first, at, provider in rows],
    )  # fmt: skip


def reset_hard_bounces(db: Connection, subscriber_id: int) -> None:
    """A message was accepted: the address's hard bounces in a row start again from 0."""
    db.execute(update(subscribers).where(subscribers.c.id == subscriber_id).values(hard_bounces=0))


def count_hard_bounce(
    db: Connection, subscriber_id: int, limit: int, reply: str, now: float
) -> None:
    """One more hard bounce of an address in a row; suppressed from the ``limit``-th on."""
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


def due_issues(db: Connection, digest: str, now: float) -> list[Any]:
    """Close the open issues of ``digest`` that wait for nothing (a crash can leave them
    open), and return those with a row due at ``now`` (id, number, window, when composed),
    oldest first.

    Only the rows of open issues are looked at: the index leads with issue_id, and a
    digest issue being sent may have a million rows waiting."""
    waiting = deliveries.c.status.in_(WAITING)
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
            select(issues.c.id, issues.c.number, issues.c.window_start, issues.c.window_end,
                   issues.c.created_at, issues.c.period)
            .where(issues.c.id.in_(open_issues), issues.c.id.in_(due))
            .order_by(issues.c.number)
        ).all()
    )  # fmt: skip
