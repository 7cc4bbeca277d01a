"""The tasks placed for the delivery workers, and the scheduler on duty.

A task only asks a worker to send up to ``rows`` due rows of an issue; the ledger's claims
decide whom. So a task lost with the broker, or run twice, costs nothing but a pass: the
scheduler places tasks for the due rows no queued task is for; a placed task the broker
no longer holds is placed again, and one no worker started within ``OUT_SECONDS`` too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, delete, func, insert, select, true, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from publisher.store.schema import delivery_tasks, duty

# A placed task no worker started within this is taken to be lost (a broker restarted
# without its queue): its rows are placed again. Celery acknowledges late, so a task
# that was started and whose worker died is given to another worker by the broker.
OUT_SECONDS = 300.0
TAKEN_SECONDS = 30.0  # a task off the queue that long and not started was lost
KEEP_SECONDS = 7 * 86400.0  # finished tasks kept this long, for status


def rows_queued(db: Connection, issue_id: int, now: float) -> int:
    """Rows of the issue that tasks still on the broker (placed, not started) are for.
    A started task has claimed its rows: they are not due, so they are not counted."""
    c = delivery_tasks.c
    found = db.execute(
        select(func.coalesce(func.sum(c.rows), 0)).where(c.issue_id == issue_id, *_queued(c, now))
    ).scalar_one()
    return int(found)


def _queued(c: Any, now: float) -> tuple[ColumnElement[bool], ...]:
    return c.started_at.is_(None), c.finished_at.is_(None), c.placed_at > now - OUT_SECONDS


def lost(db: Connection, on_broker: int, now: float) -> int:
    """The broker holds ``on_broker`` tasks: the older placed tasks beyond that were lost
    with it (a restart without persistence) or are being taken this moment. They are
    forgotten, and their rows are placed again; a task taken meanwhile is recorded when
    it starts, and claims what is left. How many were forgotten."""
    c = delivery_tasks.c
    queued = select(c.id).where(*_queued(c, now))
    newest = queued.order_by(c.placed_at.desc(), c.id.desc()).limit(on_broker)
    # A task a worker has just taken is off the queue and not yet started: not lost.
    settled = c.placed_at <= now - TAKEN_SECONDS
    gone = [str(i) for i in db.execute(queued.where(c.id.not_in(newest), settled)).scalars()]
    forget(db, gone)
    return len(gone)


def placed(db: Connection, task_id: str, issue_id: int, rows: int, now: float) -> None:
    db.execute(insert(delivery_tasks).values(id=task_id, issue_id=issue_id, rows=rows,
                                             placed_at=now))  # fmt: skip


def forget(db: Connection, task_ids: list[str]) -> None:
    """Tasks that never reached the broker."""
    if task_ids:
        db.execute(delete(delivery_tasks).where(delivery_tasks.c.id.in_(task_ids)))


def started(db: Connection, task_id: str, issue_id: int, rows: int, worker: str,
            now: float) -> None:  # fmt: skip
    """A worker took the task (again, after its first worker was lost: the later start
    counts). A task placed by a scheduler of an older database is recorded here."""
    c = delivery_tasks.c
    changed = db.execute(
        update(delivery_tasks).where(c.id == task_id)
        .values(started_at=now, worker=worker, finished_at=None)
    ).rowcount  # fmt: skip
    if not changed:
        db.execute(
            insert(delivery_tasks).values(id=task_id, issue_id=issue_id, rows=rows,
                                          placed_at=now, started_at=now, worker=worker)
        )  # fmt: skip


def finished(db: Connection, task_id: str, now: float, outcome: dict[str, int]) -> None:
    c = delivery_tasks.c
    db.execute(
        update(delivery_tasks).where(c.id == task_id).values(
            finished_at=now, sent=c.sent + outcome.get("sent", 0),
            deferred=c.deferred + outcome.get("deferred", 0),
            failed=c.failed + outcome.get("failed", 0),
        )
    )  # fmt: skip
    db.execute(delete(delivery_tasks).where(c.finished_at < now - KEEP_SECONDS))


@dataclass(frozen=True)
class WorkerSeen:
    worker: str
    last_seen: float
    tasks: int
    sent: int
    deferred: int
    failed: int
    busy: int  # tasks started and not finished


@dataclass(frozen=True)
class TaskCounts:
    queued: int  # placed, not started, not yet taken for lost
    running: int
    workers: list[WorkerSeen]


def overview(db: Connection, now: float, since: float) -> TaskCounts:
    """What `status` shows of the workers: tasks queued and running, and each worker that
    started a task since ``since`` with what its tasks did."""
    c = delivery_tasks.c
    queued = db.execute(select(func.count()).where(*_queued(c, now))).scalar_one()
    running = db.execute(
        select(func.count()).where(c.started_at.is_not(None), c.finished_at.is_(None))
    ).scalar_one()
    last = func.max(func.coalesce(c.finished_at, c.started_at))
    busy = func.count(c.started_at) - func.count(c.finished_at)
    rows = db.execute(
        select(c.worker, last, func.count(), func.sum(c.sent), func.sum(c.deferred),
               func.sum(c.failed), busy)
        .where(c.worker.is_not(None), c.started_at >= since)
        .group_by(c.worker).order_by(c.worker)
    ).all()  # fmt: skip
    seen = [WorkerSeen(str(w), float(at), int(n), int(s or 0), int(d or 0), int(f or 0),
                       int(b or 0)) for w, at, n, s, d, f, b in rows]  # fmt: skip
    return TaskCounts(int(queued), int(running), seen)


def take_duty(
    db: Connection, role: str, holder: str, now: float, lease: float, force: bool = False
) -> bool:
    """Whether ``holder`` is on duty for ``role`` until ``now + lease``: it was already
    (the lease is renewed), or nobody's lease runs (it takes over), or ``force`` (it holds
    a lock that decides). Two takers cannot both win: the conditional update is
    serialized on the row, the first insert on its primary key."""
    c = duty.c
    free = true() if force else (c.holder == holder) | (c.expires_at <= now)
    renewed = db.execute(
        update(duty).where(c.role == role, free)
        .values(holder=holder, expires_at=now + lease,
                since=case((c.holder == holder, c.since), else_=now))
    ).rowcount  # fmt: skip
    if renewed:
        return True
    exists = db.execute(select(func.count()).where(c.role == role)).scalar_one()
    if exists:
        return False
    try:
        with db.begin_nested():  # two first takers at once: the key lets one in
            db.execute(insert(duty).values(role=role, holder=holder, since=now,
                                           expires_at=now + lease))  # fmt: skip
    except IntegrityError:
        return False
    return True


def give_up_duty(db: Connection, role: str, holder: str) -> None:
    """Leave duty at once (a clean stop): a standby takes over at its next look."""
    db.execute(delete(duty).where(duty.c.role == role, duty.c.holder == holder))


def on_duty(db: Connection, role: str, now: float) -> tuple[str, float] | None:
    """Who is on duty for ``role`` and since when, if their lease runs."""
    row = db.execute(
        select(duty.c.holder, duty.c.since).where(duty.c.role == role, duty.c.expires_at > now)
    ).first()
    return None if row is None else (str(row[0]), float(row[1]))
