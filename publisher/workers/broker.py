"""The Celery application both sides share: the broker from the environment, and the
settings that make a lost worker cost nothing but a retry."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from publisher.config import Publication
from publisher.errors import ConfigError, Problem

if TYPE_CHECKING:
    from celery import Celery

TASK = "publisher.deliver"  # "send up to a batch of the due rows of issue N of digest D"
# A task taken by a worker that vanished (its host died, or the whole worker was killed)
# goes back to the queue after this; a killed pool process's task goes back at once.
VISIBILITY_SECONDS = 660.0  # just over the ledger's lease, which guards the rows meanwhile


def broker_url(pub: Publication) -> str:
    settings = pub.config.workers
    assert settings is not None
    url = os.environ.get(settings.broker_url_env, "").strip()
    if not url:
        line = pub.line_of("workers", "broker_url_env") or pub.line_of("workers")
        what = (f"the environment variable {settings.broker_url_env} is not set: it holds the "
                "broker's URL (redis://HOST:6379/0 or amqp://...)")  # fmt: skip
        raise ConfigError([Problem(pub.path.name, line, "workers.broker_url_env", what)])
    return url


def celery_app(pub: Publication) -> Celery:
    from celery import Celery

    settings = pub.config.workers
    assert settings is not None
    app = Celery("publisher", broker=broker_url(pub), set_as_current=False)
    app.conf.update(
        # Acknowledged when done: a worker lost mid-task leaves it to another.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a worker holds no task it is not running
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,  # what a task did is in the ledger, not a result backend
        task_default_queue=settings.queue,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a broker restart is waited out
        broker_transport_options={"visibility_timeout": VISIBILITY_SECONDS},
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        enable_utc=True,
    )
    return app
