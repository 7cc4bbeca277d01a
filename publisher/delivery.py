"""Deliver a digest issue to a list, one ledger row per recipient.

The guarantees, and why they hold:

* **Nothing is lost.** An issue and one ``pending`` row per recipient are written in one
  transaction before the first message goes out. A row becomes ``sent`` only after the
  backend accepted the message, in its own commit. A crash at any moment leaves every
  recipient either ``sent`` or still ``pending``/``deferred``, and the next run (of the
  same digest) resumes the unfinished issue before it composes a new one.
* **Duplicates are bounded** to the messages accepted by the server but not yet recorded
  when the process died: at most one per connection. Such a message is sent again with the
  same Message-ID (it is derived from issue and recipient), so it is recognisably the same.
* ``4xx`` replies and lost connections defer the row, retried after ``retry_first`` seconds,
  doubling up to ``retry_max``, until ``lifetime`` has passed since the first attempt; then
  it fails. ``5xx`` replies fail the row at once with the reply; after ``hard_bounces``
  such failures the address is suppressed. Throttling replies (421, 451, 454) also slow the
  run down; nobody is skipped for them. ``pause_after`` failures in a row pause the issue:
  a later run resumes it. It is never marked done while a row is pending or deferred.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, literal, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from publisher.backends import Backend, DeliveryError, Envelope
from publisher.build import build, load_articles
from publisher.config import Digest, Publication
from publisher.digest import Window, compose_issue, select_articles
from publisher.headers import InvalidAddress
from publisher.model import Article
from publisher.personalize import Letters, Recipient, prepare
from publisher.store import deliveries, epoch, issues, moment, subscribers, subscriptions
from publisher.tokens import Signer

THROTTLING = (421, 451, 454)
BATCH = 500


@dataclass
class RunReport:
    digest: str
    number: int | None = None
    status: str = "nothing to send"  # done | sending | paused | empty
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    pending: int = 0
    skipped: int = 0
    attempts: int = 0
    seconds: float = 0.0
    recipients: int = 0
    limited: bool = False  # stopped by the hourly or daily rate limit

    def line(self) -> str:
        if self.number is None:
            return f"{self.digest}: {self.status}"
        return (
            f"{self.digest} #{self.number}: {self.status}; sent {self.sent}, deferred "
            f"{self.deferred}, failed {self.failed}, pending {self.pending} of "
            f"{self.recipients}; {self.seconds:.1f} s"
            + ("; rate limit reached, the rest waits for a later run" if self.limited else "")
        )


@dataclass(frozen=True)
class Plan:
    """What an issue is: its row, its window. Composing it again gives the same bytes."""

    issue_id: int
    number: int
    window: Window


def open_issue(engine: Engine, pub: Publication, digest: Digest, now: datetime) -> Plan | None:
    """The unfinished issue of ``digest``, or a new one for the window up to ``now`` (None
    when the window holds no article and the digest skips empty issues)."""
    for _ in range(3):  # bounded: only a concurrent composer makes us look again
        with engine.begin() as db:
            row = db.execute(
                select(issues).where(issues.c.digest == digest.name, issues.c.status != "done")
                .order_by(issues.c.number).limit(1)
            ).first()  # fmt: skip
            if row is not None:
                return Plan(row.id, row.number, Window(moment(row.window_start), _end(row)))
            last = db.execute(
                select(issues.c.number, issues.c.window_end)
                .where(issues.c.digest == digest.name).order_by(issues.c.number.desc()).limit(1)
            ).first()  # fmt: skip
        start = moment(last.window_end) if last is not None else None
        window = Window(start, now)
        if start is not None and start >= now:
            return None
        if not _articles(pub, digest, window, now) and digest.skip_empty:
            return None
        number = 1 if last is None else last.number + 1
        try:
            with engine.begin() as db:
                issue_id = _create(db, digest, number, window, now)
        except IntegrityError:
            continue  # another process composed this number first: take theirs
        return Plan(issue_id, number, window)
    raise RuntimeError(f"could not open an issue of {digest.name}")


def _end(row: object) -> datetime:
    end = moment(getattr(row, "window_end"))  # noqa: B009 - a Row attribute
    assert end is not None
    return end


def _create(db: Connection, digest: Digest, number: int, window: Window, now: datetime) -> int:
    stamp = epoch(now)
    inserted = db.execute(
        issues.insert().values(
            digest=digest.name,
            number=number,
            window_start=None if window.start is None else epoch(window.start),
            window_end=epoch(window.end),
            created_at=stamp,
            status="sending",
        )
    ).inserted_primary_key
    assert inserted is not None
    issue_id = int(inserted[0])
    # Every active, unsuppressed member of the list, in one statement: the issue and all
    # its rows exist together or not at all.
    members = (
        select(
            literal(issue_id),
            subscribers.c.id,
            literal("pending"),
            literal(0),
            literal(0.0),
        )
        .join(subscriptions, subscriptions.c.subscriber_id == subscribers.c.id)
        .where(
            subscriptions.c.list == digest.list_name,
            subscriptions.c.status == "active",
            subscribers.c.suppressed_at.is_(None),
        )
    )
    columns = ["issue_id", "subscriber_id", "status", "attempts", "next_attempt_at"]
    db.execute(deliveries.insert().from_select(columns, members))
    return issue_id


def _articles(pub: Publication, digest: Digest, window: Window, now: datetime) -> list[Article]:
    report = build(pub, now, write=False)
    return select_articles(load_articles(pub, report.published), digest, window)


def compose(pub: Publication, digest: Digest, plan: Plan, now: datetime, signer: Signer) -> Letters:
    articles = _articles(pub, digest, plan.window, now)
    issue = compose_issue(pub, digest, articles, plan.number, plan.window, plan.window.end)
    return prepare(pub, issue, signer)


def deliver(
    engine: Engine,
    pub: Publication,
    digest: Digest,
    plan: Plan,
    letters: Letters,
    backend: Backend,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[int], None] | None = None,
) -> RunReport:
    """Send every due row of the issue; record each result as it happens."""
    policy = pub.config.delivery
    sender = policy.bounce_address or letters.issue.sender[1]
    report = RunReport(digest.name, plan.number)
    started = clock()
    failures_in_a_row = 0
    throttled = 0
    limiter = _RateLimiter(engine, pub, clock, sleep)
    with engine.connect() as db, backend:
        # A paused issue resumes: it is being sent again.
        db.execute(update(issues).where(issues.c.id == plan.issue_id).values(status="sending"))
        db.commit()
        while True:
            batch = db.execute(
                select(
                    deliveries.c.subscriber_id, deliveries.c.attempts,
                    deliveries.c.first_attempt_at, subscribers.c.address, subscribers.c.name,
                    subscribers.c.public_id, subscribers.c.suppressed_at,
                ).join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
                .where(
                    deliveries.c.issue_id == plan.issue_id,
                    deliveries.c.status.in_(("pending", "deferred")),
                    deliveries.c.next_attempt_at <= clock(),
                ).order_by(deliveries.c.subscriber_id).limit(BATCH)
            ).all()  # fmt: skip
            db.commit()
            if not batch:
                break
            for row in batch:
                where = and_(
                    deliveries.c.issue_id == plan.issue_id,
                    deliveries.c.subscriber_id == row.subscriber_id,
                )
                if row.suppressed_at is not None:
                    db.execute(
                        update(deliveries).where(where).values(status="skipped", updated_at=clock())
                    )
                    db.commit()
                    report.skipped += 1
                    continue
                if not limiter.wait():
                    report.limited = True
                    break
                now = clock()
                recipient = Recipient(row.address, row.name, row.public_id)
                try:
                    message = letters.render(recipient)
                    provider = backend.send(
                        message, Envelope(sender, row.address, letters.message_id(recipient))
                    )
                except InvalidAddress as exc:
                    error: DeliveryError | None = DeliveryError(str(exc), permanent=True)
                except DeliveryError as exc:
                    error = exc
                else:
                    error = None
                report.attempts += 1
                first = row.first_attempt_at if row.first_attempt_at is not None else now
                if error is None:
                    db.execute(update(deliveries).where(where).values(
                        status="sent", attempts=row.attempts + 1, first_attempt_at=first,
                        code=250, reply=None, provider_id=provider[:200], updated_at=clock(),
                    ))  # fmt: skip
                    db.commit()
                    report.sent += 1
                    limiter.count()
                    failures_in_a_row = throttled = 0
                    if progress is not None:
                        progress(1)
                    continue
                failures_in_a_row += 1
                attempts = row.attempts + 1
                reply = str(error)[:1000]
                if error.permanent and not error.connection:
                    db.execute(update(deliveries).where(where).values(
                        status="failed", attempts=attempts, first_attempt_at=first,
                        code=error.code, reply=reply, updated_at=clock(),
                    ))  # fmt: skip
                    _bounce(db, row.subscriber_id, policy.hard_bounces, reply, clock())
                    report.failed += 1
                elif now - first > policy.lifetime:
                    db.execute(update(deliveries).where(where).values(
                        status="failed", attempts=attempts, first_attempt_at=first,
                        code=error.code, reply=f"expired after {attempts} attempts: {reply}"[:1000],
                        updated_at=clock(),
                    ))  # fmt: skip
                    report.failed += 1
                else:
                    delay = min(policy.retry_first * 2 ** (attempts - 1), policy.retry_max)
                    db.execute(update(deliveries).where(where).values(
                        status="deferred", attempts=attempts, first_attempt_at=first,
                        code=error.code, reply=reply, next_attempt_at=now + delay,
                        updated_at=clock(),
                    ))  # fmt: skip
                db.commit()
                if progress is not None:
                    progress(1)
                if error.code in THROTTLING or (error.connection and not error.permanent):
                    # The server asks us to slow down: wait, longer each time (bounded).
                    throttled += 1
                    sleep(min(0.5 * 2 ** (throttled - 1), 30.0))
                if failures_in_a_row >= policy.pause_after:
                    db.execute(
                        update(issues).where(issues.c.id == plan.issue_id).values(status="paused")
                    )
                    db.commit()
                    break
            else:
                continue
            break  # paused, or a rate limit reached
        _finish(db, plan, report)
    report.seconds = clock() - started
    return report


def _bounce(db: Connection, subscriber_id: int, limit: int, reply: str, now: float) -> None:
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


def _finish(db: Connection, plan: Plan, report: RunReport) -> None:
    counts: dict[str, int] = dict(
        db.execute(
            select(deliveries.c.status, func.count())
            .where(deliveries.c.issue_id == plan.issue_id)
            .group_by(deliveries.c.status)
        ).all()
    )
    report.recipients = sum(counts.values())
    report.pending = counts.get("pending", 0)
    report.deferred = counts.get("deferred", 0)
    status = db.execute(select(issues.c.status).where(issues.c.id == plan.issue_id)).scalar_one()
    if status != "paused":
        # Done only when nobody is waiting: a crash or a deferral leaves it "sending".
        status = "done" if report.pending == 0 and report.deferred == 0 else "sending"
        db.execute(update(issues).where(issues.c.id == plan.issue_id).values(status=status))
        db.commit()
    report.status = status
    report.sent = counts.get("sent", 0)
    report.failed = counts.get("failed", 0)
    report.skipped = counts.get("skipped", 0)


class _RateLimiter:
    """Per second (in this process), per hour and per day (counted from the ledger, so
    they hold across restarts and across digests)."""

    def __init__(self, engine: Engine, pub: Publication, clock: Callable[[], float],
                 sleep: Callable[[float], None]) -> None:  # fmt: skip
        self.rate = pub.config.delivery.rate
        self.clock = clock
        self.sleep = sleep
        self.recent: list[float] = []
        self.hour = self.day = 0
        now = clock()
        if self.rate.per_hour or self.rate.per_day:
            with engine.connect() as db:
                self.hour = self._sent_since(db, now - 3600)
                self.day = self._sent_since(db, now - 86400)
        self.started = now

    @staticmethod
    def _sent_since(db: Connection, since: float) -> int:
        query = select(func.count()).where(
            deliveries.c.status == "sent", deliveries.c.updated_at >= since
        )
        return int(db.execute(query).scalar_one())

    def wait(self) -> bool:
        """Wait for the per-second limit; False when the hour's or day's is used up (the
        rest of the issue stays pending for a later run)."""
        rate = self.rate
        if rate.per_hour and self.hour >= rate.per_hour:
            return False
        if rate.per_day and self.day >= rate.per_day:
            return False
        if rate.per_second:
            now = self.clock()
            self.recent = [t for t in self.recent if t > now - 1.0]
            if len(self.recent) >= rate.per_second:
                self.sleep(max(0.0, self.recent[0] + 1.0 - now))
        return True

    def count(self) -> None:
        self.hour += 1
        self.day += 1
        if self.rate.per_second:
            self.recent.append(self.clock())
