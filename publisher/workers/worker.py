"""``publisher worker``: a Celery worker running the delivery tasks.

Each worker process keeps its own database connections, backends (SMTP connections, kept
open from one task to the next) and the messages of the issues it sends, rendered once
per issue. A task claims up to its batch of the issue's due rows like any sender, so the
per-hour, per-day and per-second limits, consent read at the claim, and each recipient
once hold across every worker on every machine, as they do across senders on one."""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from publisher.config import Publication, load_config
from publisher.digest.personalize import Letters
from publisher.tokens import Signer
from publisher.workers.broker import TASK, celery_app

log = logging.getLogger("publisher.worker")
KEEP_ISSUES = 4  # issues whose messages a process keeps rendered


@dataclass
class _Process:
    """What one worker process holds between tasks (made in the process itself: nothing
    of the parent's connections survives the fork)."""

    pub: Publication
    engine: Engine
    signer: Signer
    sender: Any  # delivery.Sender
    letters: dict[int, Letters] = field(default_factory=dict)


_CONFIG: Path | None = None  # schedule.yaml, set before the pool starts
_PROCESS: _Process | None = None


def _process() -> _Process:
    global _PROCESS
    if _PROCESS is None or _PROCESS.pub.path != _CONFIG:
        from publisher import store
        from publisher.backends import backend_pool
        from publisher.delivery import Sender
        from publisher.tokens import publication_signer

        assert _CONFIG is not None
        pub = load_config(_CONFIG)
        engine = store.open_database(pub)
        _ended()  # a changed schedule.yaml: the old connections go with the old settings
        sender = Sender(engine, pub, backend_pool(pub), keep_connections=True)
        _PROCESS = _Process(pub, engine, publication_signer(pub), sender)
    return _PROCESS


def _ended(**_: object) -> None:
    """The process ends (or starts afresh): its SMTP sessions are ended with QUIT and its
    database connections given back, rather than cut when the process exits."""
    global _PROCESS
    here, _PROCESS = _PROCESS, None
    if here is None:
        return
    for backend in here.sender.backends:
        with suppress(OSError):  # a connection already gone: nothing to end
            backend.close()
    here.engine.dispose()


def deliver_task(task: Any, digest_name: str, issue_id: int, rows: int) -> dict[str, int]:
    """Send up to ``rows`` due rows of the issue: the claim decides which, so a task run
    twice sends nobody twice. What it did is recorded with the task and logged; what went
    wrong is one line of the log (the rows it held are due again when their lease ends,
    and the scheduler places them again)."""
    from sqlalchemy.exc import SQLAlchemyError

    from publisher.errors import PublisherError
    from publisher.store import database_reason

    try:
        return _deliver(task, digest_name, issue_id, rows)
    except PublisherError as exc:
        for problem in exc.problems:
            log.error("%s", problem)
    except SQLAlchemyError as exc:
        log.error("state.database: %s (the rows are placed again)", database_reason(exc))
    return {}


def _deliver(task: Any, digest_name: str, issue_id: int, rows: int) -> dict[str, int]:
    from publisher.delivery import compose, deliver, waiting_issues
    from publisher.delivery.send import held_report, outgoing_for
    from publisher.store import tasks

    here = _process()
    engine, sender = here.engine, here.sender
    started = time.time()
    task_id = str(task.request.id)
    with engine.begin() as db:
        tasks.started(db, task_id, issue_id, rows, sender.owner, started)
    digest = here.pub.digest(digest_name)
    plans = [plan for plan in waiting_issues(engine, digest_name, started)
             if plan.issue_id == issue_id]  # fmt: skip
    outcome: dict[str, int] = {}
    number: int | str = "?"
    if plans and held_report(engine, digest) is None:
        plan = plans[0]
        number = plan.number
        letters = here.letters.get(issue_id)
        if letters is None:
            if len(here.letters) >= KEEP_ISSUES:
                here.letters.clear()
            now = plan.composed_at or plan.window.end
            letters = here.letters[issue_id] = compose(engine, here.pub, digest, plan, now,
                                                       here.signer)  # fmt: skip
        report = deliver(sender, outgoing_for(here.pub, digest, plan, letters, here.signer),
                         limit=rows)  # fmt: skip
        outcome = report.mine
    with engine.begin() as db:
        tasks.finished(db, task_id, time.time(), outcome)
    log.info("%s %s #%s: sent %d, deferred %d, failed %d (a batch of %d) in %.1f s; task %s",
             sender.owner, digest_name, number, outcome.get("sent", 0),
             outcome.get("deferred", 0), outcome.get("failed", 0), rows,
             time.time() - started, task_id[:8])  # fmt: skip
    return outcome


def _keep_logging(**_: object) -> None:
    logging.getLogger("celery").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_one_line)


def _one_line(record: logging.LogRecord) -> bool:
    """Celery's and kombu's warnings without their tracebacks (a broker that went away
    is one line: "Connection to broker lost. Trying to re-establish the connection")."""
    if record.name.startswith(("celery", "kombu", "amqp", "redis")):
        record.exc_info, record.exc_text, record.stack_info = None, None, None
    return True


def run_worker(pub: Publication) -> int:
    """Run a Celery worker for the publication until it is stopped (SIGTERM: the tasks
    running finish their batch first)."""
    global _CONFIG
    settings = pub.config.workers
    assert settings is not None
    from celery.signals import setup_logging, worker_process_shutdown, worker_shutdown

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    # Connected, this signal keeps Celery from setting up logging of its own: ours stays,
    # one line per batch, and Celery's warnings and errors show through it.
    setup_logging.connect(_keep_logging, weak=False)
    worker_process_shutdown.connect(_ended, weak=False)  # a pool's process (prefork)
    worker_shutdown.connect(_ended, weak=False)  # the worker itself (solo: it sends)
    _CONFIG = pub.path
    app = celery_app(pub)
    app.task(name=TASK, bind=True)(deliver_task)
    concurrency = settings.concurrency
    name = f"publisher-{os.getpid()}@{socket.gethostname()}"
    app.worker_main([
        "--quiet", "worker", "--loglevel=WARNING", f"--concurrency={concurrency}",
        f"--pool={'prefork' if concurrency > 1 else 'solo'}", f"--queues={settings.queue}",
        "--without-gossip", "--without-mingle", f"--hostname={name}",
    ])  # fmt: skip
    return 0
