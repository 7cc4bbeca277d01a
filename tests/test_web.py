"""The web side against a real server (uvicorn on 127.0.0.1), spoken to over HTTP."""

from __future__ import annotations

import gzip
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from publisher import store
from publisher.build import build
from publisher.config import Publication, load_config
from publisher.personalize import UNSUBSCRIBE
from publisher.tokens import Signer
from publisher.web import create_app

from .conftest import NOW
from .smtpserver import free_port

KEY = Signer([b"web-test-key-0123456789abcdef"])


@pytest.fixture
def served(example: Path) -> Iterator[tuple[str, Publication]]:
    pub = load_config(example / "schedule.yaml")
    build(pub, NOW)
    engine = store.connect(pub.database_url)
    with engine.begin() as db:
        store.add_subscriber(db, "ann@example.org", "Ann", "weekly", 0.0)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(pub, KEY), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # bounded: until the server listens
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", pub
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()


def fetch(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return (
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read(),
            )
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def test_feeds_with_caching_and_gzip(served: tuple[str, Publication]) -> None:
    base, _ = served
    for name, media in (("rss.xml", "application/rss+xml"), ("atom.xml", "application/atom+xml"),
                        ("feed.json", "application/feed+json")):  # fmt: skip
        status, headers, body = fetch(f"{base}/feeds/{name}")
        assert status == 200 and headers["content-type"].startswith(media)
        assert (
            headers["x-content-type-options"] == "nosniff"
            and "frame-ancestors 'none'" in headers["content-security-policy"]
        )
        etag, modified = headers["etag"], headers["last-modified"]
        assert fetch(f"{base}/feeds/{name}", headers={"If-None-Match": etag})[0] == 304
        assert fetch(f"{base}/feeds/{name}", headers={"If-Modified-Since": modified})[0] == 304
        assert fetch(f"{base}/feeds/{name}", headers={"If-None-Match": '"other"'})[0] == 200
    status, headers, body = fetch(f"{base}/feeds/rss.xml", headers={"Accept-Encoding": "gzip"})
    assert headers["content-encoding"] == "gzip" and gzip.decompress(body).startswith(b"<?xml")
    assert fetch(f"{base}/feeds/tags/harbour/atom.xml")[0] == 200
    for bad in ("../schedule.yaml", "%2e%2e/schedule.yaml", "nope.xml", ".gitignore"):
        assert fetch(f"{base}/feeds/{bad}")[0] == 404


def test_one_click_unsubscribe(served: tuple[str, Publication]) -> None:
    base, pub = served
    engine = store.connect(pub.database_url)
    with engine.connect() as db:
        member = next(store.members(db, "weekly"))
    token = KEY.sign(UNSUBSCRIBE, member.public_id)
    # A link scanner's GET changes nothing; it shows a confirm button.
    status, _, body = fetch(f"{base}/unsubscribe/{token}")
    assert status == 200 and b'<form method="post">' in body
    with engine.connect() as db:
        assert next(store.members(db, "weekly")).status == "active"
    # Forged and tampered tokens: a plain error, nothing changed.
    for forged in (token[:-2] + "xx", "someone.AAAAAAAAAAAAAAAAAAAAAA", "plain"):
        status, _, body = fetch(f"{base}/unsubscribe/{forged}", data=b"List-Unsubscribe=One-Click")
        assert status == 400 and b"Traceback" not in body
    with engine.connect() as db:
        assert next(store.members(db, "weekly")).status == "active"
    # RFC 8058: the mail client's POST unsubscribes, answers 200, no redirect, idempotently.
    for _ in range(2):
        status, headers, body = fetch(f"{base}/unsubscribe/{token}", data=b"List-Unsubscribe=One-Click",
                                      headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        assert status == 200 and "location" not in headers
    with engine.connect() as db:
        assert next(store.members(db, "weekly")).status == "unsubscribed"
        assert store.count_active(db, "weekly") == 0  # the next issue does not include her
    engine.dispose()


def test_multipart_post_and_no_stack_traces(served: tuple[str, Publication]) -> None:
    base, pub = served
    engine = store.connect(pub.database_url)
    with engine.connect() as db:
        token = KEY.sign(UNSUBSCRIBE, next(store.members(db, "weekly")).public_id)
    engine.dispose()
    boundary = "xYz"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n"
            f"One-Click\r\n--{boundary}--\r\n").encode()  # fmt: skip
    status, _, _ = fetch(f"{base}/unsubscribe/{token}", data=body,
                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})  # fmt: skip
    assert status == 200
    status, headers, body = fetch(f"{base}/no/such/page")
    assert status == 404 and b"Traceback" not in body and headers["x-frame-options"] == "DENY"
