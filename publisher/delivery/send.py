"""Deliver an issue to its recipients, one ledger row each, with any number of senders
on one database.

The guarantees, and why they hold (docs/delivery.md says the same for operators):

* **Nothing is lost.** An issue and one ``pending`` row per recipient are written in one
  transaction before the first message goes out. A row becomes ``sent`` only after the
  backend accepted the message; rows are recorded ``delivery.record_every`` (100) to a
  transaction, or after at most ``RECORD_SECONDS``.
* **Each recipient once, whatever the number of senders.** A sender *claims* a batch of due
  rows before it sends them (``store.ledger.claim``: the rows become ``sending``, with the
  sender's name and a lease), so no two senders hold the same row. A sender gives back
  what it claimed and did not send when it stops; the rows of a sender that was killed
  are due again when its lease ends (at once, for a dead process of this machine).
* **After a crash, duplicates only for what was sent and not recorded**: a connection
  sends only while fewer than ``record_every`` of its messages wait to be recorded, so a
  crash leaves at most that many per connection accepted by the server and not in the
  ledger. Such a message is sent again with the same Message-ID (derived from issue and
  recipient). ``record_every: 1`` restores one message per connection, at some speed.
* **Consent is read at the claim**: an address unsubscribed or suppressed since the issue
  was composed is ``skipped``.
* What a failed attempt means is ``policy.decide``'s: a recipient's 4xx defers that row
  only; the connection's trouble slows that connection; a reply about the sender pauses
  the issue and fails nobody; a server that cannot be reached pauses it within
  ``UNREACHABLE_SECONDS``. ``pause_after`` failures in a row pause it too. A paused issue
  is resumed by a later run. It is never marked done while a row is waiting.
* **A fault of the database stops the run at once** with a ``StateError`` (one line),
  after the messages in flight came back; nothing is lost: the claims are given back if
  the database takes that, else they end with their lease.
"""

from __future__ import annotations

import os
import queue
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from publisher.backends import Backend, DeliveryError, Envelope, Message
from publisher.config import Digest, Publication
from publisher.delivery.issues import Plan, compose, open_issue
from publisher.delivery.local import quiet_hold
from publisher.delivery.policy import UNREACHABLE_SECONDS, backoff, decide
from publisher.delivery.rate import BATCH, PER_CONNECTION, RateLimiter
from publisher.digest.issue import Window
from publisher.digest.personalize import Letters, Recipient
from publisher.errors import Problem, StateError
from publisher.headers import InvalidAddress
from publisher.returns.verp import envelope_sender
from publisher.store import database_reason, ledger, moment
from publisher.store import returns as returned
from publisher.tokens import Signer, publication_signer

LEASE = 600.0  # seconds a claim holds; renewed while its sender works
ANSWER_SECONDS = 120.0  # a sending thread silent this long is a bug


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
    waiting: int = 0  # articles left for the next issue by max_articles
    dropped: int = 0  # articles passed over for good (overflow: drop)
    reason: str | None = None  # why a paused issue paused
    # Rows not tried yet because their hour has not come (deliver_at: local, quiet hours).
    later: int = 0
    # Why rows are deferred or failed, the most frequent first: "3 deferred: <reply>".
    why: list[str] = field(default_factory=list)
    # What this run itself did (the counts above are the issue's): sent, deferred, failed.
    mine: dict[str, int] = field(default_factory=dict)
    # With workers: tasks this run placed, and the rows the tasks out may send.
    placed: int = 0
    queued: int = 0

    @property
    def settled(self) -> bool:
        """All is as it should be: sent, nothing to send, or only rows whose hour has not
        come are waiting (what `run --once` and `send` exit 0 for)."""
        if self.status in ("done", "nothing new to send"):
            return True
        waiting = self.pending + self.deferred
        if self.status == "sending" and self.queued:  # the workers have the rest
            return True
        return self.status == "sending" and waiting == self.later and not self.limited

    def line(self) -> str:
        if self.number is None:
            return f"{self.digest}: {self.status}" + (f": {self.reason}" if self.reason else "")
        return (
            f"{self.digest} #{self.number}: {self.status}; sent {self.sent}, deferred "
            f"{self.deferred}, failed {self.failed}, pending {self.pending} of "
            f"{self.recipients}; {self.seconds:.1f} s"
            + ("; rate limit reached, the rest waits for a later run" if self.limited else "")
            + (f"; {self.later} wait for their hour in their zone" if self.later else "")
            + (
                f"; {self.placed} task(s) placed for the workers, {self.queued} rows queued"
                if self.queued
                else ""
            )
            + (
                f"; {self.waiting} more article(s) wait for the next issue (max_articles)"
                if self.waiting
                else ""
            )
            + (
                f"; {self.dropped} older article(s) passed over (overflow: drop)"
                if self.dropped
                else ""
            )
            + (f"; paused: {self.reason}" if self.reason else "")
            + "".join(f"\n  {line}" for line in self.why)
        )


def waiting_issues(engine: Engine, name: str, now: float) -> list[Plan]:
    """The unfinished issues of ``name`` (a digest, or the confirmation mails) with a row
    due at ``now``, oldest first; issues that wait for nothing are closed, and the rows
    of dead senders of this machine are given back."""
    with engine.begin() as db:
        # A sender of this machine that was killed holds rows that are due now, not
        # when its lease ends: give them back first.
        for issue in ledger.open_issues(db, name):
            _release_dead(db, issue.id, now)
        rows = ledger.due_issues(db, name, now)
    return [
        Plan(row.id, row.number, Window(moment(row.window_start), _end(row.window_end)),
             moment(row.created_at), period=moment(row.period))
        for row in rows
    ]  # fmt: skip


def _end(seconds: float) -> datetime:
    end = moment(seconds)
    assert end is not None
    return end


def send_digest(
    sender: Sender,
    digest: Digest,
    now: datetime,
    signer: Signer,
    period: datetime | None = None,
    composed: Callable[[Letters], None] = lambda letters: None,
) -> list[RunReport]:
    """What `publisher send` and a digest's schedule do: a new issue of the articles not
    sent yet, published by ``period`` (or ``now``), if it has anything, then the due rows
    of every unfinished issue of the digest, oldest first, the new one among them. A report
    for each issue that was sent to; none when there was nothing.

    The new issue is opened first so that a second sender that lost the race to make it
    finds it among the unfinished ones and helps to send it."""
    held = held_report(sender.engine, digest)
    if held is not None:
        return [held]
    opened = open_issue(sender.engine, sender.pub, digest, now, period)
    reports = send_waiting(sender, digest, now, signer, composed)
    for report in reports:
        if opened is not None and report.number == opened.number:
            report.waiting, report.dropped = opened.waiting, opened.dropped
    return reports


def send_waiting(
    sender: Sender,
    digest: Digest,
    now: datetime,
    signer: Signer,
    composed: Callable[[Letters], None] = lambda letters: None,
) -> list[RunReport]:
    """The due rows of every unfinished issue of the digest, oldest first (retries, and
    issues another sender has begun); a report for each issue that had any."""
    engine, pub = sender.engine, sender.pub
    held = held_report(engine, digest)
    if held is not None:
        return [held]
    reports: list[RunReport] = []
    sent: list[Plan] = []
    plans = waiting_issues(engine, digest.name, sender.clock())
    if sender.workers is not None:  # the workers send: tasks for what is due
        return [sender.workers.place(digest, plan, sender.clock()) for plan in plans]
    helpers = []
    if plans and sender.processes:
        from publisher.delivery import helpers as helping

        with engine.connect() as db:
            due = sum(ledger.due_rows(db, plan.issue_id, sender.clock()) for plan in plans)
        helpers = helping.start(pub, digest, now, helping.wanted(pub, due))
    try:
        for plan in plans:
            if sender.should_stop():
                break
            letters = compose(engine, pub, digest, plan, now, signer)
            composed(letters)
            reports.append(deliver(sender, outgoing_for(pub, digest, plan, letters, signer)))
            sent.append(plan)
    finally:
        if helpers:
            helping.stop(helpers, early=sender.should_stop())
    if helpers:
        # The helpers may have sent after this process was done: count again.
        with engine.connect() as db:
            for plan, report in zip(sent, reports, strict=True):
                finish_report(db, plan, report, sender.clock())
            db.commit()
    return reports


def outgoing_for(
    pub: Publication, digest: Digest, plan: Plan, letters: Letters, signer: Signer
) -> Outgoing:
    """What is sent of a digest's issue: its messages, to its list's members, with quiet
    hours holding a scheduled issue's retries too (one sent by hand holds nothing)."""
    hold = None if plan.period is None else quiet_hold(digest, pub.zone_of(digest.schedule))
    return Outgoing(digest.name, plan, letters, digest.list_name, signer, hold)


def held_report(engine: Engine, digest: Digest) -> RunReport | None:
    """A digest held for its complaint or bounce rate sends nothing, not even retries,
    until the operator resumes it."""
    with engine.connect() as db:
        reason = returned.held(db, digest.name)
    if reason is None:
        return None
    what = f"{reason}; after a look, resume it with: publisher bounces resume {digest.name}"
    return RunReport(digest.name, status="held", reason=what)


@dataclass(frozen=True)
class _Task:
    row: ledger.Claimed
    recipient: Recipient


@dataclass(frozen=True)
class _Result:
    worker: int
    task: _Task
    provider: str | None
    error: DeliveryError | None
    crash: Exception | None = None  # a bug, not a delivery failure: re-raised, never recorded
    unsent: bool = False  # taken by the worker, never sent: nothing to record


class _Worker:
    """One connection's thread: hands the backend the next claimed rows as messages
    (``take``), and the main thread the results in small lists."""

    def __init__(self, run: _Run, number: int) -> None:
        self.run_ = run
        self.number = number
        self.permits = run.permits[number]
        self.taken: deque[_Task] = deque()  # handed to the backend, no result yet
        self.done: list[_Result] = []
        self.stopped = False

    def run(self, backend: Backend) -> None:
        stream = backend.send_many(self.take)
        try:
            for outcome in stream:
                task = self.taken.popleft()
                if isinstance(outcome, DeliveryError):
                    if not self.failed(_Result(self.number, task, None, outcome)):
                        break
                else:
                    self.done.append(_Result(self.number, task, outcome, None))
                    if len(self.done) >= HAND_OVER or not len(self.run_.tasks):
                        self.hand_over()
        except Exception as exc:  # noqa: BLE001 - a backend's bug: the main thread raises it
            if self.taken:
                self.done.append(_Result(self.number, self.taken.popleft(), None, None, exc))
        finally:
            stream.close()  # a message announced and not sent is ended unsent
            for task in self.taken:  # taken, never sent: still claimed, given back at the end
                self.done.append(_Result(self.number, task, None, None, unsent=True))
            self.hand_over()
            if not self.run_.sender.keep_connections:
                backend.close()

    def take(self, wait: bool) -> tuple[Message, Envelope] | None:
        """The next message (waiting for one if ``wait``); None at the end, or, without
        ``wait``, when none is ready now. A connection sends only while fewer than
        ``record_every`` of its messages are unrecorded."""
        run, mail = self.run_, self.run_.out.mail
        for _ in range(1 << 62):  # bounded: each turn takes a task or ends
            if self.stopped:
                return None
            if not self.permits.acquire(blocking=False):
                if not wait:
                    return None
                self.hand_over()  # record_every unrecorded: wait until they are recorded
                self.permits.acquire()
            if wait and not len(run.tasks):
                self.hand_over()  # idle: what was sent is recorded meanwhile
            task = run.tasks.get() if wait else run.tasks.get_nowait()
            if task is None:
                self.permits.release()
                self.stopped = wait
                return None
            try:
                message = mail.letter(task.recipient)
                envelope = Envelope(
                    run.envelope_for(task.recipient), task.recipient.address,
                    mail.message_id(task.recipient),
                )  # fmt: skip
            except InvalidAddress as exc:
                error = DeliveryError(str(exc), permanent=True)
                if not self.failed(_Result(self.number, task, None, error)):
                    return None
                continue
            except Exception as exc:  # noqa: BLE001 - a bug: the main thread raises it
                self.done.append(_Result(self.number, task, None, None, exc))
                self.stopped = True
                return None
            self.taken.append(task)
            return message, envelope
        return None

    def failed(self, result: _Result) -> bool:
        """Hand a failure over and wait for the main thread's verdict: go on (True), or
        stop."""
        self.done.append(result)
        self.hand_over()
        if not self.run_.verdicts[self.number].get():
            self.stopped = True
        return not self.stopped

    def hand_over(self) -> None:
        if self.done:
            self.run_.results.put(self.done)
            self.done = []


class _Tasks:
    """The claimed rows waiting for a connection. Workers take one at a time, without the
    main thread: it tops the queue up by whole claims."""

    def __init__(self) -> None:
        self.ready = threading.Condition()
        self.items: deque[_Task] = deque()
        self.closed = False

    def put(self, tasks: list[_Task]) -> None:
        with self.ready:
            self.items.extend(tasks)
            self.ready.notify(len(tasks))

    def get(self) -> _Task | None:
        """The next task; None once the queue is closed."""
        with self.ready:
            self.ready.wait_for(lambda: self.items or self.closed)
            return None if self.closed else self.items.popleft()

    def get_nowait(self) -> _Task | None:
        """The next task if one is here; None if not, or once the queue is closed."""
        with self.ready:
            return None if self.closed or not self.items else self.items.popleft()

    def close(self) -> int:
        """No more tasks: those still here are not sent (they stay claimed until the run
        gives its claims back); how many they were."""
        with self.ready:
            self.closed = True
            dropped = len(self.items)
            self.items.clear()
            self.ready.notify_all()
        return dropped

    def __len__(self) -> int:
        return len(self.items)


class Mail(Protocol):
    """What ``deliver`` sends: a digest issue's ``Letters``, or confirmation mails."""

    @property
    def sender(self) -> str: ...  # the From address: the envelope sender by default

    def message_id(self, recipient: Recipient) -> str: ...

    def letter(self, recipient: Recipient) -> Message: ...


def sender_name() -> str:
    """This process's name in the ledger's claims: host, process id, and a random part
    (a process id is used again after a restart)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass
class Sender:
    """Who sends, and with what: the database, the publication, one backend per
    connection, the clock. One per process and run; ``owner`` names its claims."""

    engine: Engine
    pub: Publication
    backends: Sequence[Backend]
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    should_stop: Callable[[], bool] = lambda: False
    progress: Callable[[int], None] | None = None
    owner: str = field(default_factory=sender_name)
    # Whether delivery.processes may start helpers beside this process (a helper itself
    # starts none).
    processes: bool = False
    # With workers: in schedule.yaml, what places the tasks; this process sends nothing
    # of the digests' issues then.
    workers: Dispatch | None = None
    # A worker process keeps its backends' connections open from one task to the next
    # (closed when the process ends); a run of its own closes them at its end.
    keep_connections: bool = False


class Dispatch(Protocol):
    def place(self, digest: Digest, plan: Plan, now: float) -> RunReport: ...


@dataclass(frozen=True)
class Outgoing:
    """What is sent: an issue (its ledger name and plan), its messages, and the list whose
    consent each recipient must still have (None: confirmation mails)."""

    name: str
    plan: Plan
    mail: Mail
    list_name: str | None
    signer: Signer | None = None  # what signs the VERP tokens (default: the publication's)
    # When a retry due at a moment may go to a recipient in a zone (quiet hours); None: then.
    hold: Callable[[float, str | None], float] | None = None


def deliver(
    sender: Sender, outgoing: Outgoing, only: int | None = None, limit: int | None = None
) -> RunReport:
    """Send every due row of the issue, one worker thread per backend (connection); the
    calling thread alone claims and records, one transaction per ``delivery.record_every``
    messages. When ``sender.should_stop`` turns true (SIGTERM), no new message is handed
    over; those in flight are recorded. With ``only``, just that subscriber's row, due or
    not; with ``limit``, at most that many rows (a worker's task)."""
    run = _Run(sender, outgoing, only, limit)
    try:
        return run.go()
    except SQLAlchemyError as exc:
        what = (f"cannot record deliveries of {outgoing.name} #{outgoing.plan.number}, "
                f"stopped: {database_reason(exc)}")  # fmt: skip
        if not _give_back(sender, outgoing.plan):
            what += f"; its claimed rows are due again in {LEASE / 60:.0f} minutes"
        raise StateError([Problem("", None, "state.database", what)]) from exc


def _give_back(sender: Sender, plan: Plan) -> bool:
    """After a fault of the database, try to give back this sender's claims at once (a
    fault may be of one statement only: a lock, a trigger, a full disk that has room for
    an update in place); whether that worked."""
    try:
        with sender.engine.begin() as db:
            ledger.release(db, plan.issue_id, sender.owner, sender.clock())
    except SQLAlchemyError:
        return False  # the lease ends on its own; the first fault is the one reported
    return True


RECORD_SECONDS = 0.25  # sent messages wait at most this long to be recorded
HAND_OVER = 16  # a worker hands its results over this many at a time (or when idle)


class _Run:
    """One sender's pass over one issue.

    The main thread claims rows and puts them in ``tasks``; each worker thread (one per
    connection) takes the next task, renders and sends it, and hands its results back in
    small lists. The main thread records them, many to a transaction. Two bounds hold it
    together: a worker sends only while fewer than ``record_every`` of its messages are
    unrecorded (``permits``), so a crash resends at most that many per connection; and a
    worker whose message failed waits for the main thread's verdict (go on, after a pause
    for a slowed connection, or stop) before it takes another task."""

    def __init__(
        self, sender: Sender, outgoing: Outgoing, only: int | None, limit: int | None
    ) -> None:
        self.sender = sender
        self.out = outgoing
        self.only = only
        self.left = limit  # rows this run may still claim (None: all that are due)
        self.settings = sender.pub.config.delivery
        self.envelope_from = self.settings.bounce_address or outgoing.mail.sender
        returns = sender.pub.config.returns
        # VERP: each envelope sender names its recipient and issue (returned mail is read).
        self.verp = None
        if returns is not None:
            self.verp = (returns.address, outgoing.signer or publication_signer(sender.pub))
        self.report = RunReport(outgoing.name, outgoing.plan.number)
        self.limiter = RateLimiter(self.settings.rate, sender.clock, sender.sleep)
        count = len(sender.backends)
        self.every = self.settings.record_every
        self.claim_size = min(BATCH, PER_CONNECTION * count)
        self.tasks = _Tasks()
        self.pending: deque[_Task] = deque()  # claimed, paced out one by one (rate.per_second)
        self.results: queue.Queue[list[_Result]] = queue.Queue()
        self.permits = [threading.Semaphore(self.every) for _ in range(count)]
        self.verdicts: list[queue.Queue[bool]] = [queue.Queue() for _ in range(count)]
        self.waiting: dict[int, float] = {}  # worker -> when it may go on, after a failure
        self.slowed = [0] * count  # slowing replies in a row, per connection
        self.unrecorded: list[tuple[_Result, float]] = []  # sent, not yet in the ledger
        self.unrecorded_since = 0.0
        self.handed = 0  # tasks put in the queue
        self.returned = 0  # results back
        self.exhausted = False  # nothing more to claim
        self.failures_in_a_row = 0
        self.last_session = sender.clock()  # when a connection last worked
        self.stop = False
        self.pause: str | None = None
        self.lease_renewed = 0.0

    def envelope_for(self, recipient: Recipient) -> str:
        if self.verp is None:
            return self.envelope_from
        address, signer = self.verp
        return envelope_sender(address, signer, self.out.plan.issue_id, recipient.id)

    def go(self) -> RunReport:
        sender, plan = self.sender, self.out.plan
        started = sender.clock()
        threads = [
            threading.Thread(target=self._work, args=(n, b), daemon=True)
            for n, b in enumerate(sender.backends)
        ]
        with sender.engine.connect() as db:
            self.db = db
            # A paused issue resumes: it is being sent again. The error budget is shared
            # by the senders at work on the issue; the first of them starts it afresh.
            ledger.set_issue_status(db, plan.issue_id, "sending")
            if not ledger.owners(db, plan.issue_id):
                ledger.reset_failures(db, plan.issue_id)
            db.commit()
            for thread in threads:
                thread.start()
            try:
                self._loop()
            finally:
                self._wind_down(threads)
            ledger.release(db, plan.issue_id, sender.owner, sender.clock())
            if self.pause is not None:
                reason = self.pause[:1000]
                ledger.set_issue_status(db, plan.issue_id, "paused", reason, sender.clock())
            db.commit()
            finish_report(db, plan, self.report, sender.clock())
        self.report.seconds = sender.clock() - started
        self.report.reason = self.pause
        return self.report

    def _loop(self) -> None:
        for _ in range(100_000_000):  # bounded: every turn hands over, records or sleeps
            if self.sender.should_stop():
                self.stop = True
            if self.stop:
                return
            self._release_waiting()
            self._feed()
            in_flight = self.handed - len(self.tasks) - self.returned
            if self.exhausted and not self.pending and not len(self.tasks) and not in_flight:
                return
            if not in_flight and (not len(self.tasks) or len(self.waiting) == len(self.permits)):
                if self.waiting:  # every connection is slowed: wait for the first
                    self.sender.sleep(max(0.0, min(self.waiting.values()) - self.sender.clock()))
                continue  # nothing out: claim (or pace) the next
            self._collect(block=True)
        raise RuntimeError("the send loop did not end")

    def _feed(self) -> None:
        """Claim when the queue runs low; with a per-second rate, hand the claimed rows
        over one at a time, each when its moment has come."""
        if not self.exhausted and len(self.tasks) + len(self.pending) < self.claim_size // 2:
            rows = self._claim()
            at = self.sender.clock()
            tasks = [_Task(row, Recipient(row.address, row.name, row.public_id, row.timezone, at))
                     for row in rows]  # fmt: skip
            if self.left is not None:
                self.left -= len(rows)
            if not rows or self.only is not None or self.left == 0:
                self.exhausted = True  # ``only``: one attempt, a deferral waits for its time
            if self.limiter.per_second:
                self.pending.extend(tasks)
            else:
                self.handed += len(tasks)
                self.tasks.put(tasks)
        if self.pending and not len(self.tasks):
            self.limiter.wait()
            self.handed += 1
            self.tasks.put([self.pending.popleft()])

    def _claim(self) -> list[ledger.Claimed]:
        sender, db = self.sender, self.db
        now = sender.clock()
        with db.begin():
            wanted = self.claim_size if self.left is None else min(self.claim_size, self.left)
            size = self.limiter.claim_size(db, now, wanted, sender.owner)
            if size == 0:
                self.report.limited = True
                return []
            if self.out.list_name is not None:
                held = returned.held(db, self.out.name)
                if held is not None:  # the brake came on while this issue was going out
                    self._pause(f"held: {held}")
                    return []
            rows = ledger.claim(db, self.out.plan.issue_id, sender.owner, now, now + LEASE,
                                size, self.out.list_name, self.only)  # fmt: skip
            # Another sender's failures count too: the next success here resets them.
            self.failures_in_a_row = ledger.failures_in_a_row(db, self.out.plan.issue_id)
        self.lease_renewed = now
        return rows

    def _work(self, number: int, backend: Backend) -> None:
        _Worker(self, number).run(backend)

    def _collect(self, block: bool) -> None:
        """Take the results that are back (waiting for some if ``block``) and record them:
        the sent ones when ``record_every`` are waiting or the oldest has waited
        ``RECORD_SECONDS``, a failure at once. A crash of a worker (a bug) is raised once
        the rest of its batch is recorded."""
        timeout = ANSWER_SECONDS
        if self.unrecorded:
            timeout = max(0.0, self.unrecorded_since + RECORD_SECONDS - time.monotonic())
        try:
            batch = self.results.get(timeout=timeout) if block else self.results.get_nowait()
        except queue.Empty:
            if not self.unrecorded and block:
                raise RuntimeError(
                    f"no answer from the sending threads for {ANSWER_SECONDS:.0f} s"
                ) from None
            batch = []
        crash = self._take(batch)
        if crash is not None:
            self.stop = True
            self._record()
            raise crash  # the row stays claimed: nothing is lost, the bug is seen
        if len(self.unrecorded) >= self.every or (
            self.unrecorded and time.monotonic() - self.unrecorded_since >= RECORD_SECONDS
        ):
            self._record()

    def _take(self, batch: list[_Result]) -> Exception | None:
        """Results into the ledger's queue (a failure recorded at once); the first crash."""
        at = self.sender.clock()
        crash = None
        for result in batch:
            self.returned += 1
            if result.unsent:
                self.permits[result.worker].release()
            elif result.crash is not None:
                crash = crash or result.crash
            elif result.error is None:
                if not self.unrecorded:
                    self.unrecorded_since = time.monotonic()
                self.unrecorded.append((result, at))
            else:
                self._record()  # in order: what was sent before the failure first
                self._failed(result, at)
                self.db.commit()
                self.permits[result.worker].release()
        return crash

    def _record(self) -> None:
        """The sent messages waiting to be recorded, in one transaction."""
        if not self.unrecorded:
            return
        sender, db, issue_id = self.sender, self.db, self.out.plan.issue_id
        done, self.unrecorded = self.unrecorded, []
        self._renew(done[-1][1])
        rows = []
        for result, at in done:
            row = result.task.row
            provider = (result.provider or "")[:200]
            rows.append((row.subscriber_id, row.attempts + 1, row.first_attempt_at or at, at,
                         provider))  # fmt: skip
            if row.hard_bounces and self.verp is None:
                # Accepted is the end of the story only when no bounce can come later:
                # with returned mail read, an accepted message may still bounce.
                ledger.reset_hard_bounces(db, row.subscriber_id)
            self.slowed[result.worker] = 0
        ledger.record_sent(db, issue_id, sender.owner, rows)
        if self.failures_in_a_row:
            ledger.reset_failures(db, issue_id)
            self.failures_in_a_row = 0
        db.commit()  # the guarantee rests on it: only now may these connections go on
        self.report.attempts += len(done)
        self.report.mine["sent"] = self.report.mine.get("sent", 0) + len(done)
        self.last_session = done[-1][1]
        for result, _ in done:
            self.permits[result.worker].release()
        if sender.progress is not None:
            sender.progress(len(done))

    def _failed(self, result: _Result, at: float) -> None:
        assert result.error is not None
        sender, db, issue_id = self.sender, self.db, self.out.plan.issue_id
        row, error = result.task.row, result.error
        self._renew(at)
        first = row.first_attempt_at if row.first_attempt_at is not None else at
        decision = decide(error, row.attempts + 1, first, at, self.settings)
        if decision.status == "requeued":
            # Not the row's fault, not an attempt: it goes back as it was.
            ledger.release(db, issue_id, sender.owner, at, row.subscriber_id)
        else:
            self.report.attempts += 1
            self.report.mine[decision.status] = self.report.mine.get(decision.status, 0) + 1
            # The error budget is the issue's, counted in the database by every sender.
            self.failures_in_a_row = ledger.count_failure(db, issue_id)
            due, hold = decision.due, self.out.hold
            if decision.status == "deferred" and hold is not None:
                due = hold(due, row.timezone)  # no retry in the recipient's night either
            ledger.record(db, issue_id, row.subscriber_id, sender.owner, decision.status,
                          row.attempts + 1, first, at, due, error.code,
                          decision.reply)  # fmt: skip
        if error.stage != "connect":
            self.last_session = at  # the server answered: a session worked
        if decision.bounce:
            ledger.count_hard_bounce(db, row.subscriber_id, self.settings.hard_bounces,
                                     decision.reply, at)  # fmt: skip
        if decision.pause is not None:
            self._pause(decision.pause)
        elif decision.unreachable and at - self.last_session >= UNREACHABLE_SECONDS:
            self._pause(f"no connection for {at - self.last_session:.0f} s: {decision.reply}")
        elif self.failures_in_a_row >= self.settings.pause_after:
            self._pause(f"{self.failures_in_a_row} failures in a row (delivery.pause_after); "
                        f"the last: {decision.reply}")  # fmt: skip
        # The worker waits for this verdict: stop (the run pauses), wait (its connection
        # is slowed down), or go on.
        worker = result.worker
        self.slowed[worker] = self.slowed[worker] + 1 if decision.slow else 0
        if self.stop:
            self.verdicts[worker].put(False)
        elif decision.slow:
            self.waiting[worker] = at + backoff(self.slowed[worker])
        else:
            self.verdicts[worker].put(True)

    def _release_waiting(self) -> None:
        """Slowed connections whose pause is over go on."""
        now = self.sender.clock()
        for worker, until in list(self.waiting.items()):
            if until <= now:
                del self.waiting[worker]
                self.verdicts[worker].put(True)

    def _wind_down(self, threads: list[threading.Thread]) -> None:
        """Stop the workers, then record what they sent (also after an error: a message
        the server took must be in the ledger, or it would go out again)."""
        self.handed -= self.tasks.close()
        for number in range(len(self.permits)):
            self.permits[number].release(self.every)  # none blocks on its permits
            self.verdicts[number].put(False)  # a worker waiting for its verdict stops
        try:
            deadline = time.monotonic() + ANSWER_SECONDS
            while self.handed - len(self.tasks) - self.returned > 0:  # bounded: the deadline
                if time.monotonic() > deadline:
                    raise RuntimeError("the sending threads did not stop")
                self._take(self.results.get(timeout=ANSWER_SECONDS))  # a second crash: seen once
            self._record()
        finally:
            for thread in threads:
                thread.join(timeout=60)

    def _pause(self, reason: str) -> None:
        self.pause = reason
        self.stop = True

    def _renew(self, now: float) -> None:
        if now - self.lease_renewed > LEASE / 2:
            ledger.renew(self.db, self.out.plan.issue_id, self.sender.owner, now + LEASE)
            self.lease_renewed = now


def _release_dead(db: Connection, issue_id: int, now: float) -> None:
    """Give back the rows held by a sender of this machine that no longer runs (killed):
    they need not wait for the end of its lease."""
    host = socket.gethostname()[:40]
    for owner in ledger.owners(db, issue_id):
        owner_host, _, rest = owner.partition(":")
        pid = rest.partition(":")[0]
        if owner_host == host and pid.isdigit() and not _alive(int(pid)):
            ledger.release(db, issue_id, owner, now)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def finish_report(db: Connection, plan: Plan, report: RunReport, now: float) -> None:
    """The issue's counts into ``report``; the issue is done when nobody waits."""
    counts = ledger.row_counts(db, plan.issue_id)
    report.recipients = sum(counts.values())
    report.pending = counts.get("pending", 0) + counts.get("sending", 0)
    report.later = ledger.not_due_yet(db, plan.issue_id, now) if report.pending else 0
    report.deferred = counts.get("deferred", 0)
    status = ledger.issue_status(db, plan.issue_id)
    if status != "paused":
        # Done only when nobody is waiting: a crash, a deferral or another sender's claim
        # leaves it "sending".
        status = "done" if report.pending == 0 and report.deferred == 0 else "sending"
        ledger.set_issue_status(db, plan.issue_id, status)
        db.commit()
    report.status = status
    report.sent = counts.get("sent", 0)
    report.failed = counts.get("failed", 0)
    report.skipped = counts.get("skipped", 0)
    report.why = [f"{rows} {status}: {reply}" for status, reply, rows in
                  ledger.reasons(db, plan.issue_id)]  # fmt: skip
