"""A state database that cannot be used is a `schedule.yaml:LINE: state.database:` error
with exit 1, never a traceback; its password is never shown."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from publisher.cli import main

from .smtpserver import free_port


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "postgresql+psycopg://news:s3cret@127.0.0.1:{port}/publisher",
            "state.database: cannot open postgresql+psycopg://news:***@127.0.0.1:{port}/publisher: connection failed",
        ),
        ("nosuch://x", "state.database: nosuch://x is not a database URL that can be used"),
        (
            "sqlite:////proc/no-such-folder/x.db",
            "state.database: cannot create sqlite:////proc/no-such-folder/x.db",
        ),
    ],
)
def test_an_unusable_database_is_a_clear_error(
    example: Path, capsys: pytest.CaptureFixture[str], url: str, message: str
) -> None:
    port = free_port()  # nothing listens there
    config = example / "schedule.yaml"
    text = config.read_text("utf-8").replace(
        "state:\n", f'state:\n  database: "{url.format(port=port)}"\n'
    )
    config.write_text(text, "utf-8")
    line = text.splitlines().index(f'  database: "{url.format(port=port)}"') + 1
    for command in (["status"], ["subscribers", "list", "--list", "weekly"]):
        assert main(["-c", str(config), *command]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"schedule.yaml:{line}: {message.format(port=port)}"), err
        assert "Traceback" not in err and "s3cret" not in err


def test_a_database_that_fails_mid_command_is_reported(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A database made by something else (here: a table of the same name with other
    columns) fails in the middle of a command: one line, exit 1."""
    (example / "var").mkdir()
    with sqlite3.connect(example / "var" / "publisher.db") as db:
        db.execute("CREATE TABLE subscribers (other_column INTEGER)")
    assert main(["-c", str(example / "schedule.yaml"), "status"]) == 1
    err = capsys.readouterr().err
    assert "state.database:" in err and "Traceback" not in err and "internal error" not in err
