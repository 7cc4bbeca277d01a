"""A private PostgreSQL cluster on 127.0.0.1 for the slow tests, started and stopped by
the test. Needs Debian's postgresql (and root, to run it as the postgres user) and
psycopg; .ci/run installs both."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .smtpserver import free_port

BINARIES = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
needs_postgres = pytest.mark.skipif(
    not BINARIES or os.geteuid() != 0, reason="needs Debian's postgresql and root"
)


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """The URL of a fresh cluster's ``postgres`` database."""
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
