"""The same state code on PostgreSQL: a private cluster on 127.0.0.1, started and stopped
by the test. Needs Debian's postgresql and psycopg; .ci/run installs both."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from publisher import store
from publisher.backends.memory import MemoryBackend
from publisher.config import load_config
from publisher.delivery import compose, deliver, open_issue
from publisher.tokens import Signer

from .conftest import NOW
from .smtpserver import free_port

BINARIES = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not BINARIES or os.geteuid() != 0, reason="needs Debian's postgresql and root"
    ),
]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    pytest.importorskip("psycopg")
    binaries = Path(BINARIES[-1])
    folder = Path(tempfile.mkdtemp(prefix="publisher-pg-"))
    folder.chmod(0o755)
    data = folder / "data"
    user = pwd.getpwnam("postgres")
    shutil.chown(folder, user.pw_uid, user.pw_gid)
    port = free_port()

    def as_postgres(*command: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True,
                       capture_output=True, timeout=120)  # fmt: skip

    as_postgres(str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    as_postgres(str(binaries / "pg_ctl"), "-D", str(data), "-w", "-l", str(folder / "log"),
                "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start")  # fmt: skip
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        as_postgres(str(binaries / "pg_ctl"), "-D", str(data), "-w", "-m", "fast", "stop")
        shutil.rmtree(folder, ignore_errors=True)


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
    plan = open_issue(engine, pub, digest, NOW)
    assert plan is not None
    assert open_issue(engine, pub, digest, NOW) == plan  # one issue per period
    letters = compose(engine, pub, digest, plan, NOW, Signer([b"postgres-test-key-0123456789"]))
    backend = MemoryBackend({"fail": {"p3@example.org": "permanent"}}, str(pub.root))
    report = deliver(engine, pub, digest.name, plan, letters, [backend])
    engine.dispose()
    assert (report.status, report.sent, report.failed, report.recipients) == ("done", 3, 1, 4)
