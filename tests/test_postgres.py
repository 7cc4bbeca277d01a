"""The same state code on PostgreSQL: a private cluster on 127.0.0.1, started and stopped
by the test. Needs Debian's postgresql and psycopg; .ci/run installs both."""

from __future__ import annotations

from pathlib import Path

import pytest

from publisher import store
from publisher.backends.memory import MemoryBackend
from publisher.config import load_config
from publisher.delivery import open_issue

from .conftest import NOW
from .postgres import needs_postgres
from .sending import send

pytestmark = [pytest.mark.slow, needs_postgres]


def test_subscribers_and_delivery_on_postgres(example: Path, postgres_url: str) -> None:
    config = example / "schedule.yaml"
    config.write_text(
        config.read_text().replace(
            "state:\n  folder: var", f"state:\n  folder: var\n  database: {postgres_url}"
        )
    )
    pub = load_config(config)
    engine = store.connect(pub.database_url)
    assert engine.dialect.name == "postgresql"
    with engine.begin() as db:
        for n in range(5):
            store.add_subscriber(db, f"p{n}@example.org", f"P {n}", "weekly", 0.0)
        store.remove_subscriber(db, "p4@example.org", "weekly", 1.0)
    digest = pub.config.digests[0]
    plan = open_issue(engine, pub, digest, NOW, period=NOW)
    assert plan is not None
    assert open_issue(engine, pub, digest, NOW, period=NOW) is None  # one issue per period
    engine.dispose()
    backend = MemoryBackend({"fail": {"p3@example.org": "permanent"}}, str(pub.root))
    [report] = send(pub, [backend], NOW)
    assert (report.status, report.sent, report.failed, report.recipients) == ("done", 3, 1, 4)
