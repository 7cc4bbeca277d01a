"""Shared fixtures: a copy of the example publication, and helpers to write small ones."""

from __future__ import annotations

import http.server
import shutil
import textwrap
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from publisher.cli import main
from publisher.config import Publication, load_config

from .postgres import postgres_cluster
from .smtpserver import Script, smtp_server

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

MINIMAL_CONFIG = """\
site:
  title: Test Notes
  url: https://test.example/
  author: Tess Tester
  timezone: UTC
"""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite the golden files under tests/golden/ from the current output",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def server() -> Iterator[tuple[int, Script]]:
    """An SMTP server on 127.0.0.1 (``smtpserver.Script``): its port and its script."""
    with smtp_server() as (controller, script):
        yield controller.port, script


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A private PostgreSQL cluster's URL (mark the test ``needs_postgres``)."""
    with postgres_cluster() as url:
        yield url


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A private copy of the repository's example publication."""
    target = tmp_path / "example"
    target.mkdir()
    shutil.copy(ROOT / "schedule.yaml", target / "schedule.yaml")
    shutil.copytree(ROOT / "articles", target / "articles")
    shutil.copytree(ROOT / "templates", target / "templates")
    return target


@pytest.fixture
def site(tmp_path: Path) -> Callable[..., Publication]:
    """Make a small publication: ``site(files={"articles/a.md": "..."}, config=...)``."""

    def make(
        files: dict[str, str | bytes] | None = None, config: str = MINIMAL_CONFIG
    ) -> Publication:
        root = tmp_path / "site"
        root.mkdir(exist_ok=True)
        (root / "schedule.yaml").write_text(textwrap.dedent(config), "utf-8")
        (root / "articles").mkdir(exist_ok=True)
        for name, content in (files or {}).items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(textwrap.dedent(content), "utf-8")
        return load_config(root / "schedule.yaml")

    return make


@pytest.fixture
def listener() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on 127.0.0.1 that records every request it gets."""
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/css")
            self.end_headers()
            self.wfile.write(b"p { color: red; }")

        def log_message(self, *args: object) -> None:
            pass

    with http_server(Handler) as url:
        yield url, requests


def add_reader(pub: Publication, address: str = "ann@example.org", name: str = "Ann") -> None:
    """One confirmed subscriber of the weekly digest."""
    from publisher import store

    engine = store.connect(pub.database_url)
    with engine.begin() as db:
        store.add_subscriber(db, address, name, "weekly", 0.0)
    engine.dispose()


@contextmanager
def http_server(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` on a real HTTP server on 127.0.0.1, stopped afterwards; its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass(frozen=True)
class Ran:
    """What a command did: its exit status and what it printed."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Ran]:
    """``cli("build", "--json", cwd=folder, env={...}, unset=[...])``: the command line,
    run in this process as an operator runs it (``main``, the exit status, both streams)."""

    def run(
        *args: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        unset: tuple[str, ...] = (),
    ) -> Ran:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        for name in unset:
            monkeypatch.delenv(name, raising=False)
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
        printed = capsys.readouterr()
        return Ran(code, printed.out, printed.err)

    return run
