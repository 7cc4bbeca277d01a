"""Mistakes an operator makes on the command line and in schedule.yaml: one ``where: what``
line and exit 1 (2 for a usage error), never a traceback; and nothing done that was not
meant."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from publisher.config import load_config

from .conftest import Ran

SECRET = {"PUBLISHER_SECRET": "a-secret-of-the-test-0123456789"}


def test_serve_with_a_port_out_of_range_is_a_usage_error(
    example: Path, cli: Callable[..., Ran]
) -> None:
    done = cli("serve", "--port", "99999", cwd=example, env=SECRET)
    assert done.returncode == 2
    assert "argument --port: '99999' is not a port number from 1 to 65535" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_on_a_port_in_use_says_so_in_one_line(example: Path, cli: Callable[..., Ran]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = cli("serve", "--port", str(port), cwd=example, env=SECRET)
    assert done.returncode == 1
    assert (
        done.stderr == f"serve: --port: cannot listen on 127.0.0.1:{port}: address already in use\n"
    )


def test_serve_on_an_address_of_no_interface_says_so(
    example: Path, cli: Callable[..., Ran]
) -> None:
    done = cli("serve", "--host", "name.invalid", "--port", "8000", cwd=example, env=SECRET)
    assert done.returncode == 1 and done.stderr.startswith("serve: --host: cannot listen on ")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "command",
    [("send", "weekly"), ("build",), ("run", "--once")],
)
def test_a_now_far_ahead_of_the_clock_needs_force(
    example: Path, cli: Callable[..., Ran], command: tuple[str, ...]
) -> None:
    ahead = (datetime.now(UTC) + timedelta(days=365 * 36)).isoformat()
    done = cli(*command, "--now", ahead, cwd=example, env=SECRET)
    assert done.returncode == 2
    assert (
        "years ahead of the clock" in done.stderr and "give --force if you mean it" in done.stderr
    )
    assert not (example / "outbox").exists() and not (example / "feeds").exists()
    assert not (example / "var" / "publisher.db").exists()


def test_looking_ahead_needs_no_force(
    example: Path, cli: Callable[..., Ran], tmp_path: Path
) -> None:
    ahead = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    assert (
        cli("send", "weekly", "--dry-run", "--now", ahead, cwd=example, env=SECRET).returncode == 0
    )
    assert cli("plan", "--now", ahead, cwd=example).returncode == 0
    forced = cli("build", "--now", ahead, "--force", cwd=example, env=SECRET)
    assert forced.returncode == 0, forced.stderr


def test_check_warns_when_the_signing_secret_is_not_set(
    example: Path, cli: Callable[..., Ran]
) -> None:
    done = cli("check", cwd=example, unset=("PUBLISHER_SECRET",))
    assert done.returncode == 0
    assert "schedule.yaml:36: warning: email.secret_env: PUBLISHER_SECRET is not set" in done.stderr
    assert "PUBLISHER_SECRET is not set" not in cli("check", cwd=example, env=SECRET).stderr


def test_a_reload_with_a_bad_permalink_keeps_the_last_good_schedule(
    example: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import os

    from publisher.scheduler.daemon import Foreground

    config = example / "schedule.yaml"
    daemon = Foreground(load_config(config), lambda tick: None)
    try:
        good = daemon.pub
        config.write_text(
            config.read_text().replace('"articles/{slug}/"', '"articles/{year}/{slug}/"')
        )
        stat = config.stat()
        os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        caplog.set_level(logging.INFO)
        daemon._reload()
    finally:
        daemon.engine.dispose()
    assert daemon.pub is good
    (logged,) = [r.getMessage() for r in caplog.records if r.name.startswith("publisher")]
    assert logged == (
        f"{config}:13: site.permalink: unknown placeholder {{year}} in "
        "'articles/{year}/{slug}/' (placeholders: {slug}) (the last good schedule stays in force)"
    )


def test_a_fault_in_a_scheduled_job_is_one_line_of_the_log(
    example: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from sqlalchemy.exc import OperationalError

    from publisher.scheduler.daemon import Foreground

    daemon = Foreground(load_config(example / "schedule.yaml"), lambda tick: None)
    daemon._look_at_duty()  # the one scheduler: on duty, as at its start
    daemon.engine.dispose()
    caplog.set_level(logging.INFO)

    def broken() -> None:
        raise RuntimeError("a bug")

    def locked() -> None:
        raise OperationalError("UPDATE", {}, Exception("database is locked"))

    daemon._guard(broken)
    daemon._guard(locked)
    lines = [(r.getMessage(), r.exc_info) for r in caplog.records if r.levelno >= logging.INFO]
    assert [line for line, _ in lines] == [
        "internal error: RuntimeError: a bug (please report it)",
        "state.database: database is locked (the next run tries again)",
    ]
    assert all(info is None for _, info in lines)  # no traceback at the operator's level


def test_send_test_to_a_bad_address_is_a_usage_error(
    example: Path, cli: Callable[..., Ran]
) -> None:
    done = cli("send", "weekly", "--test", "not-an-address", cwd=example, env=SECRET)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr == "--test: not-an-address: An email address must have an @-sign.\n"
    assert not (example / "outbox").exists()
