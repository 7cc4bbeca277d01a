"""The scheduler's side: tasks on the broker for the due rows of an issue that no task
is out for, each for up to ``workers.batch`` rows. Recorded in the database before they
are placed, so what is out is known to every scheduler and to `status`."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from publisher.config import Digest, Publication
from publisher.delivery.issues import Plan
from publisher.delivery.send import RunReport, finish_report
from publisher.errors import Problem, StateError
from publisher.store import ledger, tasks
from publisher.workers.broker import TASK, celery_app

if TYPE_CHECKING:
    from celery import Celery


class Placer:
    """Places the tasks of one publication (a `Dispatch` of ``delivery.send``)."""

    def __init__(self, pub: Publication, engine: Engine) -> None:
        self.pub = pub
        self.engine = engine
        self._app: Celery | None = None

    def app(self) -> Celery:
        if self._app is None:
            self._app = celery_app(self.pub)
        return self._app

    def place(self, digest: Digest, plan: Plan, now: float) -> RunReport:
        settings = self.pub.config.workers
        assert settings is not None
        batch = settings.batch
        on_broker = self._on_broker()
        with self.engine.begin() as db:
            tasks.lost(db, on_broker, now)
            due = ledger.due_rows(db, plan.issue_id, now)
            out = tasks.rows_queued(db, plan.issue_id, now)
            count = max(0, -(-(due - out) // batch))
            ids = [secrets.token_hex(16) for _ in range(count)]
            for task_id in ids:
                tasks.placed(db, task_id, plan.issue_id, batch, now)
        app = self.app()
        for number, task_id in enumerate(ids):
            try:
                app.send_task(TASK, args=[digest.name, plan.issue_id, batch], task_id=task_id,
                              queue=settings.queue)  # fmt: skip
            except Exception as exc:  # the broker's own errors: kombu's, redis', amqp's
                with self.engine.begin() as db:
                    tasks.forget(db, ids[number:])  # not out: placed again next time
                raise _broker_error(f"cannot place tasks for {digest.name} #{plan.number}",
                                    exc) from exc  # fmt: skip
        report = RunReport(digest.name, plan.number)
        with self.engine.connect() as db:
            finish_report(db, plan, report, now)
        report.placed = count
        report.queued = min(due, out + count * batch)
        return report

    def _on_broker(self) -> int:
        """How many tasks wait on the broker's queue (a queue it does not know: none)."""
        from amqp.exceptions import ChannelError

        settings = self.pub.config.workers
        assert settings is not None
        try:
            with self.app().connection_for_read() as connection:
                try:
                    found = connection.default_channel.queue_declare(
                        queue=settings.queue, passive=True
                    )
                except ChannelError:
                    return 0  # not declared yet, or emptied and gone (Redis)
                return int(found.message_count)
        except Exception as exc:  # the broker's own errors: kombu's, redis', amqp's
            raise _broker_error("cannot read the broker's queue", exc) from exc


def _broker_error(doing: str, exc: Exception) -> StateError:
    what = f"{doing}: {type(exc).__name__}: {exc}"
    return StateError([Problem("", None, "workers.broker", what)])


def placer_for(pub: Publication, engine: Engine) -> Placer | None:
    """What places the tasks, with workers: in schedule.yaml; None: send in-process."""
    return None if pub.config.workers is None else Placer(pub, engine)
