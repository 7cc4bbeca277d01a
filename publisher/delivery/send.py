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

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from publisher.backends import Backend, DeliveryError, Envelope
from publisher.build import build, load_articles
from publisher.config import Digest, Publication
from publisher.delivery.policy import decide, throttle_pause
from publisher.delivery.rate import RateLimiter
from publisher.digest.issue import Issue, Window, compose_issue, select_articles
from publisher.digest.personalize import Letters, Recipient, prepare
from publisher.headers import InvalidAddress
from publisher.model import Article
from publisher.store import epoch, ledger, moment
from publisher.tokens import Signer

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


def open_issue(
    engine: Engine,
    pub: Publication,
    digest: Digest,
    now: datetime,
    period: datetime | None = None,
) -> Plan | None:
    """The unfinished issue of ``digest``, or a new one for the window up to ``now`` (None
    when the window holds no article and the digest skips empty issues). A scheduled
    issue names its ``period``: its window ends there, and the database holds one issue
    per period, however many schedulers ask."""
    for _ in range(3):  # bounded: only a concurrent composer makes us look again
        with engine.begin() as db:
            row = ledger.unfinished_issue(db, digest.name)
            if row is not None:
                return Plan(row.id, row.number, Window(moment(row.window_start), _end(row)))
            last = ledger.last_issue(db, digest.name)
        start = moment(last.window_end) if last is not None else None
        end = period or now
        window = Window(start, end)
        if start is not None and start >= end:
            return None
        if not issue_articles(pub, digest, window, now) and digest.skip_empty:
            return None
        number = 1 if last is None else last.number + 1
        try:
            with engine.begin() as db:
                issue_id = ledger.create_issue(
                    db, digest.name, digest.list_name, number,
                    (None if window.start is None else epoch(window.start), epoch(window.end)),
                    epoch(now), None if period is None else epoch(period),
                )  # fmt: skip
        except IntegrityError:
            if period is not None and _has_period(engine, digest, period):
                return None  # another scheduler composed (and maybe sent) this period
            continue  # another process composed this number first: take theirs
        return Plan(issue_id, number, window)
    raise RuntimeError(f"could not open an issue of {digest.name}")


def _end(row: object) -> datetime:
    end = moment(getattr(row, "window_end"))  # noqa: B009 - a Row attribute
    assert end is not None
    return end


def _has_period(engine: Engine, digest: Digest, period: datetime) -> bool:
    with engine.connect() as db:
        return ledger.has_period(db, digest.name, epoch(period))


def last_period(engine: Engine, digest: Digest) -> datetime | None:
    """The latest scheduled period the ledger has an issue for."""
    with engine.connect() as db:
        return moment(ledger.last_period(db, digest.name))


def issue_articles(
    pub: Publication, digest: Digest, window: Window, now: datetime
) -> list[Article]:
    """The articles of the issue for ``window``: chosen from the build's small records
    first, so only the few articles that can be in the issue are read again from their
    files (reading all 10,000 of a large publication cost 5 s per issue). Chosen again
    once read: a file changed since the build may have moved out of the window."""
    entries = select_articles(build(pub, now, write=False).published, digest, window)
    return select_articles(load_articles(pub, entries), digest, window)


def compose(
    engine: Engine, pub: Publication, digest: Digest, plan: Plan, now: datetime, signer: Signer
) -> Letters:
    """The issue's messages; its web page is kept for the archive the first time."""
    articles = issue_articles(pub, digest, plan.window, now)
    issue = compose_issue(pub, digest, articles, plan.number, plan.window, plan.window.end)
    letters = prepare(pub, issue, signer)
    keep_web_page(engine, plan.issue_id, issue)
    return letters


def web_page(issue: Issue) -> str:
    """The issue without per-recipient parts: no name, and no one's unsubscribe link."""
    return issue.html.replace(issue.markers["name"], "reader").replace(
        issue.markers["unsubscribe_url"], "/subscribe"
    )


def keep_web_page(engine: Engine, issue_id: int, issue: Issue) -> str:
    """The archived page of the issue, stored now if it was not (the first one stays)."""
    with engine.connect() as db:
        kept = ledger.kept_page(db, issue_id)
    if kept is not None:
        return kept
    page = web_page(issue)
    try:
        with engine.begin() as db:
            ledger.keep_page(db, issue_id, page)
    except IntegrityError:  # composed at the same moment elsewhere: the same page
        pass
    return page


@dataclass(frozen=True)
class _Task:
    subscriber_id: int
    attempts: int
    first_attempt_at: float | None
    recipient: Recipient


@dataclass(frozen=True)
class _Result:
    task: _Task
    at: float
    provider: str | None
    error: DeliveryError | None
    crash: Exception | None = None  # a bug, not a delivery failure: re-raised, never recorded


class Mail(Protocol):
    """What ``deliver`` sends: a digest issue's ``Letters``, or confirmation mails."""

    @property
    def sender(self) -> str: ...  # the From address: the envelope sender by default

    def message_id(self, recipient: Recipient) -> str: ...

    def render(self, recipient: Recipient) -> bytes: ...


def deliver(
    engine: Engine,
    pub: Publication,
    name: str,
    plan: Plan,
    letters: Mail,
    backends: Sequence[Backend],
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    only: int | None = None,
) -> RunReport:
    """Send every due row of the issue ``name``, one worker thread per backend
    (connection); the calling thread alone writes the ledger, one commit per message.
    When ``should_stop`` turns true (SIGTERM), no new message is handed over; those in
    flight are recorded. With ``only``, just that subscriber's row, due or not."""
    policy = pub.config.delivery
    sender = policy.bounce_address or letters.sender
    report = RunReport(name, plan.number)
    started = clock()
    tasks: queue.Queue[_Task | None] = queue.Queue(maxsize=2 * len(backends))
    results: queue.Queue[_Result] = queue.Queue()

    def work(backend: Backend) -> None:
        try:
            while (task := tasks.get()) is not None:
                try:
                    # Here, not before the loop: a refused connection is then this
                    # message's transient failure, recorded and retried, and a run with
                    # nothing due opens no connection.
                    backend.open()
                    message = letters.render(task.recipient)
                    envelope = Envelope(
                        sender, task.recipient.address, letters.message_id(task.recipient)
                    )
                    result = _Result(task, clock(), backend.send(message, envelope), None)
                except InvalidAddress as exc:
                    result = _Result(task, clock(), None, DeliveryError(str(exc), permanent=True))
                except DeliveryError as exc:
                    result = _Result(task, clock(), None, exc)
                except Exception as exc:  # noqa: BLE001 - handed to the main thread, which raises it
                    result = _Result(task, clock(), None, None, crash=exc)
                results.put(result)
        finally:
            backend.close()

    threads = [threading.Thread(target=work, args=(b,), daemon=True) for b in backends]
    state = _State(policy.pause_after)
    limiter = RateLimiter(engine, pub, clock, sleep)
    with engine.connect() as db:
        # A paused issue resumes: it is being sent again.
        ledger.set_issue_status(db, plan.issue_id, "sending")
        db.commit()
        for thread in threads:
            thread.start()
        in_flight = 0
        try:
            while not state.stop:
                batch = _due(db, plan, clock(), only)
                if not batch:
                    break
                for row in batch:
                    if row.suppressed_at is not None:
                        _record(db, plan, _Task(row.subscriber_id, row.attempts,
                                                row.first_attempt_at, _recipient(row)),
                                "skipped", clock(), code=None, reply=None)  # fmt: skip
                        continue
                    if should_stop():
                        state.stop = True
                        break
                    if not limiter.wait():
                        report.limited = state.stop = True
                        break
                    task = _Task(
                        row.subscriber_id, row.attempts, row.first_attempt_at, _recipient(row)
                    )
                    while True:  # hand the task over; meanwhile record what came back
                        try:
                            tasks.put(task, timeout=0.05)
                            in_flight += 1
                            limiter.count()  # counted when handed over: limits never overshoot
                            break
                        except queue.Full:
                            in_flight -= _drain(db, plan, results, policy, state, report,
                                                progress, sleep, block=False)  # fmt: skip
                    in_flight -= _drain(db, plan, results, policy, state, report,
                                        progress, sleep, block=False)  # fmt: skip
                    if state.stop:
                        break
                # Rows of this batch still in flight are recorded before the next query,
                # so the query never hands out a row twice.
                while in_flight:
                    in_flight -= _drain(db, plan, results, policy, state, report,
                                        progress, sleep, block=True)  # fmt: skip
                if only is not None:
                    break  # one attempt: a deferred row waits for its retry time
        finally:
            for _ in threads:
                with contextlib.suppress(queue.Full):  # a thread that died takes none
                    tasks.put(None, timeout=5)
            for thread in threads:
                thread.join(timeout=60)
            while in_flight:
                in_flight -= _drain(db, plan, results, policy, state, report,
                                    progress, sleep, block=True)  # fmt: skip
        if state.paused:
            ledger.set_issue_status(db, plan.issue_id, "paused")
            db.commit()
        _finish(db, plan, report)
    report.seconds = clock() - started
    return report


class _State:
    def __init__(self, pause_after: int) -> None:
        self.pause_after = pause_after
        self.failures_in_a_row = 0
        self.throttled = 0
        self.paused = False
        self.stop = False


def _recipient(row: Any) -> Recipient:
    return Recipient(row.address, row.name, row.public_id)


def _due(db: Connection, plan: Plan, now: float, only: int | None = None) -> list[Any]:
    batch = ledger.due_rows(db, plan.issue_id, now, BATCH, only)
    db.commit()
    return batch


def _record(
    db: Connection,
    plan: Plan,
    task: _Task,
    status: str,
    at: float,
    code: int | None,
    reply: str | None,
    provider: str | None = None,
    due: float = 0.0,
    attempts: int | None = None,
) -> None:
    first = task.first_attempt_at if task.first_attempt_at is not None else at
    ledger.record(
        db, plan.issue_id, task.subscriber_id, status,
        task.attempts if attempts is None else attempts, first, at, due, code, reply, provider,
    )  # fmt: skip


def _drain(
    db: Connection,
    plan: Plan,
    results: queue.Queue[_Result],
    policy: Any,
    state: _State,
    report: RunReport,
    progress: Callable[[int], None] | None,
    sleep: Callable[[float], None],
    block: bool,
) -> int:
    """Record the results that are back (at least one if ``block``); how many."""
    done = 0
    while True:
        try:
            result = results.get(timeout=120) if block and done == 0 else results.get_nowait()
        except queue.Empty:
            if block and done == 0:
                raise RuntimeError("no answer from the sending threads for 120 s") from None
            return done
        done += 1
        _outcome(db, plan, result, policy, state, report, sleep)
        db.commit()  # one commit per message: the guarantee rests on it
        if progress is not None:
            progress(1)


def _outcome(
    db: Connection,
    plan: Plan,
    result: _Result,
    policy: Any,
    state: _State,
    report: RunReport,
    sleep: Callable[[float], None],
) -> None:
    if result.crash is not None:
        raise result.crash  # the row stays pending: nothing is lost, the bug is seen
    task, error, at = result.task, result.error, result.at
    attempts = task.attempts + 1
    report.attempts += 1
    if error is None:
        provider = (result.provider or "")[:200]
        _record(db, plan, task, "sent", at, 250, None, provider, attempts=attempts)
        state.failures_in_a_row = state.throttled = 0
        return
    state.failures_in_a_row += 1
    first = task.first_attempt_at if task.first_attempt_at is not None else at
    decision = decide(error, attempts, first, at, policy)
    _record(db, plan, task, decision.status, at, error.code, decision.reply,
            due=decision.due, attempts=attempts)  # fmt: skip
    if decision.bounce:
        ledger.count_hard_bounce(db, task.subscriber_id, policy.hard_bounces, decision.reply, at)
    if decision.throttle:
        # The server asks us to slow down: wait, longer each time (bounded).
        state.throttled += 1
        sleep(throttle_pause(state.throttled))
    if state.failures_in_a_row >= state.pause_after:
        state.paused = state.stop = True


def _finish(db: Connection, plan: Plan, report: RunReport) -> None:
    counts = ledger.row_counts(db, plan.issue_id)
    report.recipients = sum(counts.values())
    report.pending = counts.get("pending", 0)
    report.deferred = counts.get("deferred", 0)
    status = ledger.issue_status(db, plan.issue_id)
    if status != "paused":
        # Done only when nobody is waiting: a crash or a deferral leaves it "sending".
        status = "done" if report.pending == 0 and report.deferred == 0 else "sending"
        ledger.set_issue_status(db, plan.issue_id, status)
        db.commit()
    report.status = status
    report.sent = counts.get("sent", 0)
    report.failed = counts.get("failed", 0)
    report.skipped = counts.get("skipped", 0)
