"""WebSub: every feed and page names the hubs, and a build that changed feeds tells each
hub which, once; a hub that fails costs a warning with its answer, never the build."""

from __future__ import annotations

import http.server
import json
import re
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from publisher.build import build
from publisher.config import Publication, load_config

from .conftest import NOW, Ran, http_server

FEEDS = "https://notes.kestrelbay.example/feeds/"


@contextmanager
def hub(status: int = 202) -> Iterator[tuple[str, list[dict[str, list[str]]]]]:
    """A WebSub hub on 127.0.0.1 that records each publish request and answers
    ``status``."""
    received: list[dict[str, list[str]]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode()
            assert self.headers["Content-Type"] == "application/x-www-form-urlencoded"
            received.append(urllib.parse.parse_qs(body))
            self.send_response(status)
            self.end_headers()
            if status >= 400:
                self.wfile.write(b"hub says no")

        def log_message(self, *args: object) -> None:
            pass

    with http_server(Handler) as url:
        yield url + "/", received


def with_hub(example: Path, url: str) -> Publication:
    config = example / "schedule.yaml"
    text = re.sub(r"  hubs: \[.*\]\n", "", config.read_text())
    config.write_text(text.replace("feeds:\n", f"feeds:\n  hubs: [{url}]\n", 1))
    return load_config(config)


def test_a_build_that_changed_feeds_tells_the_hub_once(example: Path) -> None:
    with hub() as (url, received):
        pub = with_hub(example, url)
        report = build(pub, NOW, sleep=lambda seconds: None)
        assert [(p.ok, p.answer) for p in report.pings] == [(True, "202 Accepted")]
        assert len(received) == 1 and received[0]["hub.mode"] == ["publish"]
        topics = received[0]["hub.url"]
        assert f"{FEEDS}rss.xml" in topics and f"{FEEDS}tags/harbour/atom.xml" in topics
        assert len(topics) == len(report.feeds)
        assert build(pub, NOW, sleep=lambda seconds: None).pings == []  # nothing changed
        (example / "articles" / "new.md").write_text(
            "---\ntitle: New\ndate: 2026-11-28 09:00\ntags: [harbour]\n---\nText.\n"
        )
        build(pub, NOW, sleep=lambda seconds: None)
        assert len(received) == 2
        assert set(received[1]["hub.url"]) == {
            f"{FEEDS}{tag}{name}"
            for tag in ("", "tags/harbour/")
            for name in ("rss.xml", "atom.xml", "feed.json")
        }


def test_every_feed_and_page_names_the_hub(example: Path) -> None:
    with hub() as (url, _):
        pub = with_hub(example, url)
        build(pub, NOW, sleep=lambda seconds: None)
    assert f'<atom:link href="{url}" rel="hub"/>' in (pub.feeds_dir / "rss.xml").read_text()
    assert f'<link href="{url}" rel="hub"/>' in (pub.feeds_dir / "atom.xml").read_text()
    hubs = json.loads((pub.feeds_dir / "feed.json").read_text())["hubs"]
    assert hubs == [{"type": "WebSub", "url": url}]
    page = (pub.site_dir / "articles" / "welcome" / "index.html").read_text()
    assert f'<link rel="hub" href="{url}">' in page


def test_a_failing_hub_is_a_warning_with_its_answer_and_the_build_goes_on(
    example: Path, cli: Callable[..., Ran]
) -> None:
    with hub(status=503) as (url, received):
        pub = with_hub(example, url)
        slept: list[float] = []
        report = build(pub, NOW, sleep=slept.append)
        assert len(received) == 3 and slept == [1.0, 2.0]  # bounded: three attempts
        (ping,) = report.pings
        assert not ping.ok and ping.answer == "503 Service Unavailable: hub says no"
    with hub(status=400) as (url, received):
        with_hub(example, url)
        (example / "articles" / "new.md").write_text("---\ntitle: New\ndate: 2026-11-28\n---\nx\n")
        done = cli("build", "--now", NOW.isoformat(), cwd=example)
        assert done.returncode == 0 and len(received) == 1  # a refusal is not tried again
        assert (
            f"feeds.hubs: warning: {url} was not told of the changed feeds (1 attempt(s)): 400 Bad Request: hub says no"
            in done.stderr
        )
        assert "websub: 0 of 1 hub(s) told of the changed feeds" in done.stdout


def test_a_hub_that_cannot_be_reached_costs_a_bounded_wait() -> None:
    from publisher.feeds.websub import publish

    (ping,) = publish(["http://127.0.0.1:9/"], [f"{FEEDS}rss.xml"], sleep=lambda s: None)
    assert not ping.ok and ping.attempts == 3 and ping.answer.startswith("cannot reach it")
