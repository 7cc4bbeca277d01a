"""The web side under attack, against a real uvicorn server on 127.0.0.1: timing that tells
who subscribed, floods, crafted tokens, Host games, slow and idle connections, password
guessing, tokens in logs, state files others can read, links that never expire."""

from __future__ import annotations

import base64
import contextlib
import logging
import socket
import stat
import statistics
import time
import tracemalloc
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from publisher import store
from publisher.build import build
from publisher.config import Publication, load_config
from publisher.confirm import CONFIRM
from publisher.tokens import UNSUBSCRIBE
from publisher.web import create_app
from publisher.web.limits import MAX_CLIENTS, RateLimit
from publisher.web.subscribe import CSRF

from .conftest import NOW, add_reader
from .smtpserver import free_port, smtp_server
from .test_web import KEY, fetch, form_token, serving, settle


def publication(example: Path, extra: str = "") -> Publication:
    config = example / "schedule.yaml"
    config.write_text(config.read_text("utf-8") + extra, "utf-8")
    pub = load_config(config)
    build(pub, NOW)
    add_reader(pub)
    return pub


def post_form(base: str, cookie: str, field: str, address: str, client: str) -> tuple[int, float]:
    data = urlencode({"csrf": field, "email": address, "list": "weekly"}).encode()
    # uvicorn takes the client address from X-Forwarded-For of a proxy on 127.0.0.1, so each
    # try counts against a client of its own, not against the rate limit of the test.
    started = time.perf_counter()
    status, _, _ = fetch(
        f"{base}/subscribe", data=data, headers={"Cookie": cookie, "X-Forwarded-For": client}
    )
    return status, time.perf_counter() - started


@pytest.mark.slow  # 40 answers of 0.1 s and 20 mails of 0.2 s: about 10 s
def test_sign_up_timing_does_not_tell_new_from_subscribed(example: Path) -> None:
    port = free_port()
    pub = publication(example)
    config = pub.path.read_text("utf-8").replace(
        "  type: maildir\n  path: outbox\n",
        f"  type: smtp\n  host: 127.0.0.1\n  port: {port}\n  tls: none\n  timeout: 5\n",
    )
    pub.path.write_text(config, "utf-8")
    pub = load_config(pub.path)
    with smtp_server(port=port) as (_, script), serving(pub) as base:
        script.slow_seconds = 0.2  # every "slow..." recipient's mail takes 0.2 s: twice the floor
        cookie, field = form_token(base)
        new: list[float] = []
        known: list[float] = []
        for n in range(20):
            # One sign-up at a time, each after the last one's mail went out: the mail
            # server, the sender and this client share one process here, and a mail being
            # sent would slow whichever answer came next. The order alternates.
            tries = [("new", f"slow{n}@example.org"), ("known", "ann@example.org")]
            for kind, address in tries if n % 2 else tries[::-1]:
                status, seconds = post_form(base, cookie, field, address, f"198.51.100.{n}")
                assert status == 200
                (new if kind == "new" else known).append(seconds)
                settle(pub)
    assert len(script.received) == 20  # every new address got its mail, after its answer
    difference = abs(statistics.median(new) - statistics.median(known))
    assert difference < 0.005, (statistics.median(new), statistics.median(known))


def test_rate_limit_memory_is_bounded_under_50000_clients() -> None:
    limits = RateLimit()
    tracemalloc.start()
    try:
        for n in range(50_000):
            assert limits.allow(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(limits.seen) == MAX_CLIENTS
    assert peak < 12 * 1024 * 1024, peak  # 42 MB and growing before


def test_ipv6_clients_are_limited_by_their_64() -> None:
    from starlette.requests import Request

    from publisher.web.limits import client_key

    def key(host: str) -> str:
        return client_key(Request({"type": "http", "client": (host, 1), "headers": []}))

    assert key("2001:db8:1:2::1") == key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert key("198.51.100.7") == "198.51.100.7"


@pytest.mark.slow
def test_the_real_server_remembers_at_most_max_clients(example: Path) -> None:
    import http.client

    pub = publication(example)
    app = create_app(pub, KEY)
    with serving(pub, app) as base:
        cookie, field = form_token(base)
        connection = http.client.HTTPConnection(
            "127.0.0.1", int(base.rsplit(":", 1)[1]), timeout=10
        )
        body = urlencode({"csrf": field, "email": "not an address", "list": "weekly"})
        for n in range(50_000):
            connection.request(
                "POST", "/subscribe", body,
                {"Cookie": cookie, "X-Forwarded-For": f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}",
                 "Content-Type": "application/x-www-form-urlencoded"},
            )  # fmt: skip
            response = connection.getresponse()
            response.read()
            assert response.status == 400
        connection.close()
    assert len(app.state.limits.seen) == MAX_CLIENTS


def test_non_ascii_tokens_are_refused_not_server_errors(example: Path) -> None:
    pub = publication(example)
    with serving(pub) as base:
        for path in ("unsubscribe", "confirm", "preferences"):
            assert fetch(f"{base}/{path}/{quote('ä.é')}")[0] == 400
            assert (
                fetch(f"{base}/{path}/{quote('ä.é')}", data=b"List-Unsubscribe=One-Click")[0] == 400
            )
        cookie, _ = form_token(base)
        data = urlencode({"csrf": "é.ü", "email": "x@example.org"}).encode()
        assert fetch(f"{base}/subscribe", data=data, headers={"Cookie": cookie})[0] == 400
        assert fetch(f"{base}/subscribe", data=data, headers={"Cookie": "csrf=%C3%A9"})[0] == 400


def raw_request(base: str, request: bytes) -> bytes:
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):  # bounded: the server closes (Connection: close)
            chunks.append(chunk)
    return b"".join(chunks)


def test_trailing_slash_redirects_are_relative(example: Path) -> None:
    pub = publication(example)
    with serving(pub) as base:
        answer = raw_request(
            base,
            b"GET /issues/weekly?x=1 HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
        )
    head = answer.split(b"\r\n\r\n")[0].decode()
    assert head.startswith("HTTP/1.1 307")
    assert "\r\nlocation: /issues/weekly/?x=1" in head.lower()
    assert "evil" not in head


def test_idle_and_slow_connections_are_closed(example: Path) -> None:
    pub = publication(example, "web:\n  request_timeout: 1s\n")
    with serving(pub) as base:
        port = int(base.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(300)]
        slow = socket.create_connection(("127.0.0.1", port), timeout=10)
        slow.sendall(b"GET /subscribe HTTP/1.1\r\nHost: x\r\n")
        # A client that trickles its head, a header every 0.1 s for 3 s: cut all the same.
        for n in range(30):  # bounded: 30 headers
            with contextlib.suppress(OSError):  # the server may have closed already
                slow.sendall(f"X-{n}: y\r\n".encode())
            time.sleep(0.1)
        for sock in [*idle, slow]:
            # Closed by the server, without an answer (recv waits at most 10 s).
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(1024) == b""
            sock.close()
        # The server still answers everyone else.
        assert fetch(f"{base}/subscribe")[0] == 200


def test_status_password_guesses_are_limited(
    example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBLISHER_STATUS_PASSWORD", "s3cret-status")
    pub = publication(example)
    right = {"Authorization": "Basic " + base64.b64encode(b"op:s3cret-status").decode()}
    with serving(pub) as base:
        assert fetch(f"{base}/status", headers=right)[0] == 200
        for n in range(10):
            wrong = base64.b64encode(f"op:guess{n}".encode()).decode()
            assert fetch(f"{base}/status", headers={"Authorization": f"Basic {wrong}"})[0] == 401
        status, headers, _ = fetch(f"{base}/status", headers=right)
    assert status == 429 and headers["retry-after"] == "600"


def test_hsts_when_configured(example: Path) -> None:
    with serving(publication(example)) as base:
        assert "strict-transport-security" not in fetch(f"{base}/subscribe")[1]
    pub = load_config(example / "schedule.yaml")
    config = pub.path.read_text("utf-8") + "web:\n  hsts: 365d\n"
    pub.path.write_text(config, "utf-8")
    with serving(load_config(pub.path)) as base:
        headers = fetch(f"{base}/subscribe")[1]
    assert headers["strict-transport-security"] == "max-age=31536000"


def test_the_access_log_shows_no_token(example: Path) -> None:
    pub = publication(example)
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    token = KEY.sign(UNSUBSCRIBE, "abc123")
    keep = Keep()
    with serving(pub, log_level="info") as base:
        logging.getLogger("uvicorn.access").addHandler(keep)
        try:
            for path in (f"/unsubscribe/{token}", f"/confirm/{token}?x=1", f"/preferences/{token}"):
                fetch(base + path)
        finally:
            logging.getLogger("uvicorn.access").removeHandler(keep)
    assert len(lines) == 3
    assert all(token not in line and token.split(".")[1] not in line for line in lines), lines
    assert '"GET /unsubscribe/… HTTP/1.1" 200' in lines[0]


def test_state_files_are_private(example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from publisher.cli import main

    monkeypatch.setenv("PUBLISHER_SECRET", "test-secret-0123456789")
    monkeypatch.chdir(example)
    config = str(example / "schedule.yaml")
    assert main(["-c", config, "subscribers", "add", "ann@example.org", "--list", "weekly"]) == 0
    assert main(["-c", config, "run", "--once", "--now", NOW.isoformat()]) == 0
    state = example / "var"
    private = [state, state / "publisher.db", state / "build-cache.sqlite3", example / "outbox"]
    private += [example / "outbox" / "new", *(example / "outbox" / "new").iterdir()]
    for path in private:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, (path, oct(mode))
    # A database an older version left readable by everyone is narrowed when opened.
    (state / "publisher.db").chmod(0o644)
    store.connect(f"sqlite:///{state / 'publisher.db'}").dispose()
    assert stat.S_IMODE((state / "publisher.db").stat().st_mode) == 0o600
    for unit in ("publisher.service", "publisher-web.service"):
        text = (Path(__file__).resolve().parent.parent / "docs" / unit).read_text()
        assert "\nUMask=0077\n" in text


def test_confirmation_links_and_forms_expire(example: Path) -> None:
    pub = publication(example)
    engine = store.connect(pub.database_url)
    with engine.begin() as db:
        subscriber, _ = store.request_subscription(
            db, "nia@example.org", "Nia", ["weekly"], time.time()
        )
    public_id = (
        engine.connect()
        .execute(store.subscribers.select().where(store.subscribers.c.id == subscriber))
        .one()
        .public_id
    )
    engine.dispose()
    week = 7 * 86400
    with serving(pub) as base:
        stale = KEY.sign(CONFIRM, public_id, issued=int(time.time()) - week - 3600)
        assert fetch(f"{base}/confirm/{stale}", data=b"")[0] == 400
        untimed = KEY.sign(CONFIRM, public_id)  # the old form of the link: no time in it
        assert fetch(f"{base}/confirm/{untimed}", data=b"")[0] == 400
        cookie, _ = form_token(base)
        nonce = cookie.split("=", 1)[1]
        old_field = KEY.sign(CSRF, nonce, issued=int(time.time()) - 3 * 3600)
        data = urlencode({"csrf": old_field, "email": "x@example.org"}).encode()
        status, _, body = fetch(f"{base}/subscribe", data=data, headers={"Cookie": cookie})
        assert status == 400 and b"expired" in body
        fresh = KEY.sign(CONFIRM, public_id, issued=int(time.time()) - 3600)
        assert fetch(f"{base}/confirm/{fresh}", data=b"")[0] == 200
