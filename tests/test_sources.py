"""Upstream feeds against a real HTTP server on 127.0.0.1 serving feeds written for the
tests: each kind of feed gives its entries, each entry is new once, and a failing source
costs only itself."""

from __future__ import annotations

import gzip
import http.server
import json
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from publisher import store
from publisher.config import Publication, load_config
from publisher.sources.poll import Polled, poll
from publisher.store.upstream import entry_counts, release, shown_entries

from .conftest import MINIMAL_CONFIG, Ran, http_server
from .conftest import NOW as NOW_MOMENT

NOW = 1_790_000_000.0  # the moment every poll here happens at (no clock is read)


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None  # answered 304 to a request that has it


@dataclass
class Upstream:
    url: str
    routes: dict[str, Route]
    seen: list[tuple[str, dict[str, str]]]  # (path, request headers) of every request


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    routes: dict[str, Route] = {}
    seen: list[tuple[str, dict[str, str]]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, dict(self.headers.items())))
            route = routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            if route.etag is not None and self.headers.get("If-None-Match") == route.etag:
                self.send_response(304)
                self.end_headers()
                return
            self.send_response(route.status)
            for name, value in route.headers.items():
                self.send_header(name, value)
            if route.etag is not None:
                self.send_header("ETag", route.etag)
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            self.wfile.write(route.body)

        def log_message(self, *args: object) -> None:
            pass

    with http_server(Handler) as url:
        yield Upstream(url, routes, seen)


def rss(*items: tuple[str, str, str], extra: str = "") -> bytes:
    """An RSS 2.0 feed of (guid, title, link) items."""
    body = "".join(
        f"<item><guid>{guid}</guid><title>{title}</title><link>{link}</link>"
        f"<pubDate>Mon, 02 Nov 2026 10:0{n}:00 GMT</pubDate>"
        f"<description>&lt;p&gt;About {title}&lt;/p&gt;</description>{extra}</item>"
        for n, (guid, title, link) in enumerate(items)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>Up</title><link>https://up.example/</link><description>d</description>{body}"
        "</channel></rss>"
    ).encode()


def item(n: int) -> tuple[str, str, str]:
    return (f"urn:up:{n}", f"Story {n}", f"https://up.example/{n}")


@pytest.fixture
def make(
    site: Callable[..., Publication], upstream: Upstream
) -> Iterator[Callable[..., tuple[Publication, Engine]]]:
    engines: list[Engine] = []

    def build(*sources: str) -> tuple[Publication, Engine]:
        config = MINIMAL_CONFIG + "sources:\n" + "".join(sources)
        pub = site(config=config.replace("{up}", upstream.url))
        engine = store.connect(pub.database_url)
        engines.append(engine)
        return pub, engine

    yield build
    for engine in engines:
        engine.dispose()


def source(name: str, path: str, **settings: str) -> str:
    lines = f"  - name: {name}\n    url: {{up}}{path}\n"
    return lines + "".join(f"    {key}: {value}\n" for key, value in settings.items())


def titles(engine: Engine, name: str) -> list[str]:
    with engine.connect() as db:
        return [stored.entry.title for stored in shown_entries(db, [name])]


def by_name(done: list[Polled]) -> dict[str, Polled]:
    return {polled.name: polled for polled in done}


def test_new_entries_once_then_a_304_then_only_the_two_new_ones(
    make: Callable[..., tuple[Publication, Engine]], upstream: Upstream
) -> None:
    pub, engine = make(source("up", "/feed.xml"))
    upstream.routes["/feed.xml"] = Route(body=rss(*map(item, range(3))), etag='"v1"')
    first = poll(pub, engine, NOW)[0]
    assert (first.status, first.new, first.problem) == (200, 3, None)
    assert titles(engine, "up") == ["Story 0", "Story 1", "Story 2"]
    # Due again only after the interval (an hour by default); then a conditional GET.
    assert poll(pub, engine, NOW + 60)[0].fetched is False
    again = poll(pub, engine, NOW + 3600)[0]
    assert (again.status, again.new) == (304, 0)
    assert upstream.seen[-1][1]["If-None-Match"] == '"v1"'
    assert "publisher/" in upstream.seen[-1][1]["User-Agent"]
    assert "test.example" in upstream.seen[-1][1]["User-Agent"]
    upstream.routes["/feed.xml"] = Route(body=rss(*map(item, range(5))), etag='"v2"')
    third = poll(pub, engine, NOW + 7200)[0]
    assert third.new == 2
    assert titles(engine, "up")[3:] == ["Story 3", "Story 4"]
    # Served again unchanged, without an ETag this time: nothing is new.
    upstream.routes["/feed.xml"] = Route(body=rss(*map(item, range(5))))
    assert poll(pub, engine, NOW + 10800)[0].new == 0
    assert len(titles(engine, "up")) == 5


ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://atom.example/blog/">
<title>A</title><id>urn:a</id><updated>2026-11-02T10:00:00Z</updated>
<entry><id>urn:a:1</id><title>Relative</title><link href="posts/1/"/>
<updated>2026-11-02T10:00:00Z</updated>
<content type="html">&lt;p&gt;See &lt;a href="../about/"&gt;about&lt;/a&gt;&lt;/p&gt;</content></entry>
</feed>"""

RDF = b"""<?xml version="1.0" encoding="utf-8"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/">
<channel rdf:about="https://rdf.example/"><title>R</title><link>https://rdf.example/</link>
<description>d</description></channel>
<item rdf:about="https://rdf.example/1"><title>Ten</title><link>https://rdf.example/1</link>
<description>One point oh</description></item>
</rdf:RDF>"""

JSON_FEED = b"""{"version": "https://jsonfeed.org/version/1.1", "title": "J",
"items": [{"id": "j1", "url": "https://json.example/1", "title": "Jay",
"content_html": "<p>Hi</p>", "date_published": "2026-11-02T10:00:00+01:00",
"tags": ["news"], "authors": [{"name": "Jo"}]}]}"""

LATIN = (
    '<?xml version="1.0" encoding="iso-8859-1"?><rss version="2.0"><channel><title>L</title>'
    "<link>https://latin.example/</link><description>d</description>"
    "<item><title>Caf\u00e9 cr\u00e8me</title><link>https://latin.example/1</link></item>"
    "</channel></rss>"
).encode("iso-8859-1")


def test_every_kind_of_feed_gives_its_entries(
    make: Callable[..., tuple[Publication, Engine]], upstream: Upstream
) -> None:
    pub, engine = make(
        source("atom", "/atom.xml"), source("rdf", "/rdf.xml"), source("json", "/feed.json"),
        source("gz", "/gz.xml"), source("latin", "/latin.xml"), source("bare", "/bare.xml"),
    )  # fmt: skip
    upstream.routes["/atom.xml"] = Route(
        body=ATOM, headers={"Content-Type": "application/atom+xml"}
    )
    upstream.routes["/rdf.xml"] = Route(body=RDF, headers={"Content-Type": "application/rdf+xml"})
    upstream.routes["/feed.json"] = Route(
        body=JSON_FEED, headers={"Content-Type": "application/feed+json"}
    )
    upstream.routes["/gz.xml"] = Route(
        body=gzip.compress(rss(item(1))),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/rss+xml"},
    )
    upstream.routes["/latin.xml"] = Route(body=LATIN, headers={"Content-Type": "application/xml"})
    # No ids and no dates: the link is the identity, and the date is the first sighting's.
    upstream.routes["/bare.xml"] = Route(
        body=b'<rss version="2.0"><channel><title>B</title><link>https://b.example/</link>'
        b"<description>d</description><item><title>No id</title>"
        b"<link>https://b.example/x</link></item></channel></rss>"
    )
    done = by_name(poll(pub, engine, NOW))
    assert all(p.problem is None and p.new == 1 for p in done.values()), done
    assert "gzip" in upstream.seen[0][1]["Accept-Encoding"]
    with engine.connect() as db:
        entries = {s.source: s.entry for s in shown_entries(db, list(done))}
    assert entries["atom"].link == "https://atom.example/blog/posts/1/"
    assert 'href="https://atom.example/about/"' in entries["atom"].content
    assert (entries["rdf"].title, entries["rdf"].link) == ("Ten", "https://rdf.example/1")
    json_entry = entries["json"]
    assert (json_entry.title, json_entry.author, json_entry.tags) == ("Jay", "Jo", ("news",))
    assert json_entry.published == "2026-11-02T09:00:00+00:00"
    assert entries["gz"].title == "Story 1"
    assert entries["latin"].title == "Caf\u00e9 cr\u00e8me"
    assert entries["bare"].published is None and entries["bare"].link == "https://b.example/x"


def test_guids_that_all_change_at_once_are_not_new_entries(
    make: Callable[..., tuple[Publication, Engine]], upstream: Upstream
) -> None:
    pub, engine = make(source("up", "/feed.xml"))
    upstream.routes["/feed.xml"] = Route(body=rss(*map(item, range(3))))
    assert poll(pub, engine, NOW)[0].new == 3
    renamed = [
        (f"https://new-ids.example/{n}", f"Story {n}", f"https://up.example/{n}") for n in range(3)
    ]
    upstream.routes["/feed.xml"] = Route(body=rss(*renamed))
    assert poll(pub, engine, NOW + 3600)[0].new == 0
    assert titles(engine, "up") == ["Story 0", "Story 1", "Story 2"]


def test_a_flood_of_unseen_entries_is_held_until_released(
    make: Callable[..., tuple[Publication, Engine]], upstream: Upstream
) -> None:
    pub, engine = make(source("up", "/feed.xml", hold_above="5"))
    upstream.routes["/feed.xml"] = Route(body=rss(*map(item, range(3))))
    poll(pub, engine, NOW)
    upstream.routes["/feed.xml"] = Route(body=rss(*map(item, range(3, 203))))
    flood = poll(pub, engine, NOW + 3600)[0]
    assert (flood.new, flood.held) == (200, 200)
    assert flood.note is not None and "publisher sources release up" in flood.note
    assert len(titles(engine, "up")) == 3
    with engine.connect() as db:
        assert entry_counts(db) == {"up": (3, 200)}
    with engine.begin() as db:
        assert release(db, "up") == 200
    assert len(titles(engine, "up")) == 203


def test_redirects_gone_and_retry_after(
    make: Callable[..., tuple[Publication, Engine]], upstream: Upstream
) -> None:
    pub, engine = make(
        source("moved", "/old.xml"), source("temporary", "/tmp.xml"),
        source("gone", "/gone.xml"), source("busy", "/busy.xml", interval="10m"),
    )  # fmt: skip
    upstream.routes["/old.xml"] = Route(301, headers={"Location": "/older.xml"})
    upstream.routes["/older.xml"] = Route(308, headers={"Location": "/new.xml"})
    upstream.routes["/new.xml"] = Route(body=rss(item(1)))
    upstream.routes["/tmp.xml"] = Route(302, headers={"Location": "/new.xml"})
    upstream.routes["/gone.xml"] = Route(410)
    upstream.routes["/busy.xml"] = Route(429, headers={"Retry-After": "7200"})
    done = by_name(poll(pub, engine, NOW))
    assert done["moved"].new == 1 and done["moved"].note is not None
    assert f"{upstream.url}/new.xml" in done["moved"].note
    assert done["temporary"].new == 1 and done["temporary"].note is None
    assert done["gone"].problem is not None and "410" in done["gone"].problem.what
    busy = done["busy"]
    assert busy.problem is not None and str(busy.problem).startswith("schedule.yaml:")
    assert "sources[3] (busy)" in str(busy.problem) and "HTTP 429" in busy.problem.what
    assert busy.next_fetch_at == NOW + 7200
    upstream.seen.clear()
    later = by_name(poll(pub, engine, NOW + 7200, force=True))
    asked = [path for path, _ in upstream.seen]
    assert "/new.xml" in asked and "/old.xml" not in asked  # the stored URL followed
    assert asked.count("/tmp.xml") == 1  # a temporary redirect keeps the configured URL
    assert "/gone.xml" not in asked and later["gone"].fetched is False


def test_failures_are_the_sources_own_and_back_off(
    make: Callable[..., tuple[Publication, Engine]], upstream: Upstream
) -> None:
    with silent_server() as silent, endless_server() as endless:
        pub, engine = make(
            source("broken", "/broken.xml", interval="5m"), source("fine", "/feed.xml"),
            source("html", "/page.html"),
            f"  - name: silent\n    url: {silent}/feed.xml\n",
            f"  - name: endless\n    url: {endless}/feed.xml\n",
            "  - name: nowhere\n    url: http://127.0.0.1:9/feed.xml\n",
        )  # fmt: skip
        upstream.routes["/broken.xml"] = Route(body=b"<rss><channel><item><title>x</rss>")
        upstream.routes["/feed.xml"] = Route(body=rss(item(1)))
        upstream.routes["/page.html"] = Route(body=b"<html><body>Not a feed</body></html>")
        done = by_name(poll(pub, engine, NOW, timeout=0.5, limit=100_000))
        assert done["fine"].new == 1 and done["fine"].problem is None
        problems = {name: str(p.problem) for name, p in done.items() if p.problem}
        assert set(problems) == {"broken", "html", "silent", "endless", "nowhere"}
        assert "not a feed that can be read" in problems["broken"]
        assert "no answer within 0.5 s" in problems["silent"]
        assert "larger than 100,000 bytes" in problems["endless"]
        assert "sources[5] (nowhere): cannot connect: Connection refused" in problems["nowhere"]
        # Doubling: 5 min after the first failure, 10 after the second.
        assert done["broken"].next_fetch_at == NOW + 300
        assert by_name(poll(pub, engine, NOW + 300))["broken"].next_fetch_at == NOW + 300 + 600
        assert titles(engine, "fine") == ["Story 1"]


@contextmanager
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers."""
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(8)
    try:
        yield f"http://127.0.0.1:{listening.getsockname()[1]}"
    finally:
        listening.close()


@contextmanager
def endless_server() -> Iterator[str]:
    """Answers 200 and sends a body that never ends (until the client goes away)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.end_headers()
            try:
                self.wfile.write(b'<rss version="2.0"><channel><title>')
                for _ in range(100_000):  # bounded: 6.5 GB at most, the client stops first
                    self.wfile.write(b"x" * 65536)
            except OSError:
                pass

        def log_message(self, *args: object) -> None:
            pass

    with http_server(Handler) as url:
        yield url


def test_the_cli_fetches_and_reports(
    make: Callable[..., tuple[Publication, Engine]], upstream: Upstream, cli: Callable[..., Ran]
) -> None:
    pub, _ = make(source("up", "/feed.xml"), source("bad", "/missing.xml"))
    upstream.routes["/feed.xml"] = Route(body=rss(*map(item, range(2))))
    done = cli("sources", "fetch", cwd=pub.root)
    assert done.returncode == 1
    assert "up: 2 new" in done.stdout
    assert "sources[1] (bad): HTTP 404" in done.stderr
    assert "Traceback" not in done.stderr
    released = cli("sources", "release", "nope", cwd=pub.root)
    assert released.returncode == 1 and "no source 'nope'" in released.stderr


def test_run_once_fetches_the_due_sources_and_status_shows_them(
    make: Callable[..., tuple[Publication, Engine]], upstream: Upstream, cli: Callable[..., Ran]
) -> None:
    pub, _ = make(source("up", "/feed.xml"), source("later", "/later.xml"))
    upstream.routes["/feed.xml"] = Route(body=rss(*map(item, range(2))), etag='"e"')
    upstream.routes["/later.xml"] = Route(500)
    before = cli("status", cwd=pub.root)
    assert "source up: not fetched yet" in before.stdout
    secret = {"PUBLISHER_SECRET": "sources-test-secret-0123456789"}
    ran = cli("run", "--once", "--now", "2026-11-28T12:00:00Z", cwd=pub.root, env=secret)
    assert "up: 2 new" in ran.stdout
    assert "sources[1] (later): HTTP 500" in ran.stderr and ran.returncode == 1
    shown = cli("status", cwd=pub.root)
    assert "source up: last fetch 2026-11-28T12:00:00+00:00 (HTTP 200), 2 new; 2 entries;" in (
        shown.stdout
    )
    assert "next fetch 2026-11-28T13:00:00+00:00" in shown.stdout
    assert "source later: last fetch 2026-11-28T12:00:00+00:00 (HTTP 500: HTTP 500" in (
        shown.stdout
    )
    data = json.loads(cli("status", "--json", cwd=pub.root).stdout)
    assert [s["source"] for s in data["sources"]] == ["up", "later"]
    # Within the interval nothing is asked again.
    asked = len(upstream.seen)
    cli("run", "--once", "--now", "2026-11-28T12:30:00Z", cwd=pub.root)
    assert len(upstream.seen) == asked + 0 or all(
        p == "/later.xml" for p, _ in upstream.seen[asked:]
    )


def test_a_sources_entries_go_out_once_each_in_the_digest(
    example: Path, upstream: Upstream
) -> None:
    """Three entries upstream: an issue with them; two more: the next issue has exactly
    those two; the same feed again: no issue. Each entry's title reaches the subscriber."""
    from email import message_from_bytes, policy

    from publisher.backends.memory import MemoryBackend
    from publisher.config import load_config

    from .sending import send
    from .test_issue_truth import issue_slugs, subscribe

    config = example / "schedule.yaml"
    pub = load_config(config)
    subscribe(pub, ("a@example.org", "Ann"))
    outbox = MemoryBackend({}, str(pub.root))
    assert [r.number for r in send(pub, [outbox], NOW_MOMENT)] == [1]  # the local articles
    config.write_text(
        config.read_text()
        + f"sources:\n  - name: up\n    url: {upstream.url}/feed.xml\n    tags: [upstream]\n"
    )
    pub = load_config(config)
    engine = store.connect(pub.database_url)
    try:
        upstream.routes["/feed.xml"] = Route(body=rss(*map(item, range(3))))
        hour = 3600.0
        assert poll(pub, engine, NOW_MOMENT.timestamp() + hour)[0].new == 3
        second = send(pub, [outbox], NOW_MOMENT + timedelta(hours=1))
        assert [r.number for r in second] == [2]
        held = issue_slugs(pub)
        assert len(held[2]) == 3 and all(slug.startswith("up-") for slug in held[2])
        upstream.routes["/feed.xml"] = Route(body=rss(*map(item, range(5))))
        assert poll(pub, engine, NOW_MOMENT.timestamp() + 2 * hour)[0].new == 2
        third = send(pub, [outbox], NOW_MOMENT + timedelta(hours=2))
        assert [r.number for r in third] == [3]
        assert len(issue_slugs(pub)[3]) == 2 and not set(issue_slugs(pub)[3]) & set(held[2])
        assert poll(pub, engine, NOW_MOMENT.timestamp() + 3 * hour)[0].new == 0
        assert send(pub, [outbox], NOW_MOMENT + timedelta(hours=3)) == []
    finally:
        engine.dispose()
    bodies = [
        message_from_bytes(raw, policy=policy.default).get_body(("plain",)).get_content()  # type: ignore[union-attr]
        for _, raw in outbox.outbox
    ]
    assert len(bodies) == 3  # one subscriber, three issues
    assert all(f"Story {n}" in bodies[1] for n in range(3))
    assert "Story 3" in bodies[2] and "Story 4" in bodies[2] and "Story 0" not in bodies[2]


OPML = """<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0"><head><title>My feeds</title></head><body>
  <outline text="News" title="News">
    <outline type="rss" text="Harbour Office" title="Harbour Office"
             xmlUrl="https://harbour.example/feed.xml" htmlUrl="https://harbour.example/"/>
    <outline type="rss" text="Tides &amp; Times" xmlUrl="https://tides.example/atom.xml"/>
  </outline>
  <outline type="rss" text="Already" xmlUrl="https://known.example/feed.xml"/>
  <outline type="link" text="Not a feed" url="https://plain.example/"/>
</body></opml>
"""


@pytest.mark.parametrize("after", ["", "web:\n  double_opt_in: true\n"])
def test_opml_import_adds_the_new_feeds_to_schedule_yaml_and_keeps_the_rest(
    site: Callable[..., Publication], cli: Callable[..., Ran], after: str
) -> None:
    config = (
        MINIMAL_CONFIG + "# the feeds we follow\nsources:\n"
        "  - name: known   # since spring\n    url: https://known.example/feed.xml\n\n" + after
    )
    pub = site(config=config)
    (pub.root / "feeds.opml").write_text(OPML)
    done = cli("sources", "import", "feeds.opml", cwd=pub.root)
    assert done.returncode == 0, done.stderr
    assert "2 source(s) added, 1 already there" in done.stdout
    text = pub.path.read_text()
    assert "# the feeds we follow" in text and "# since spring" in text and after in text
    fresh = load_config(pub.path)
    assert [(s.name, s.url) for s in fresh.config.sources] == [
        ("known", "https://known.example/feed.xml"),
        ("harbour-office", "https://harbour.example/feed.xml"),
        ("tides-times", "https://tides.example/atom.xml"),
    ]
    again = cli("sources", "import", "feeds.opml", cwd=pub.root)
    assert "0 source(s) added, 3 already there" in again.stdout
    assert pub.path.read_text() == text


def test_opml_import_without_sources_and_with_a_broken_file(
    site: Callable[..., Publication], cli: Callable[..., Ran]
) -> None:
    pub = site()
    (pub.root / "feeds.opml").write_text(OPML)
    assert cli("sources", "import", "feeds.opml", cwd=pub.root).returncode == 0
    assert len(load_config(pub.path).config.sources) == 3
    before = pub.path.read_text()
    (pub.root / "bad.opml").write_text("<opml><body><outline xmlUrl='x'></body>")
    bad = cli("sources", "import", "bad.opml", cwd=pub.root)
    assert bad.returncode == 1 and bad.stderr.startswith("bad.opml:1: opml: not well-formed XML")
    (pub.root / "ftp.opml").write_text("<opml><body>\n<outline xmlUrl='ftp://x/'/></body></opml>")
    wrong = cli("sources", "import", "ftp.opml", cwd=pub.root)
    assert wrong.returncode == 1 and "ftp.opml:2: opml: xmlUrl 'ftp://x/'" in wrong.stderr
    assert pub.path.read_text() == before


def test_a_published_source_is_in_the_feeds_and_pages_and_its_entries_go_out_once(
    example: Path, upstream: Upstream
) -> None:
    """``publish: true``: the entries are items of the publication's own feeds and cards
    on its front page, linking to the original; a digest still sends each once; a build
    with nothing new upstream renders nothing again, and an entry edited upstream is."""
    from publisher.backends.memory import MemoryBackend
    from publisher.build import build

    from .sending import send
    from .test_issue_truth import issue_slugs, subscribe

    config = example / "schedule.yaml"
    config.write_text(
        config.read_text() + f"sources:\n  - name: up\n    url: {upstream.url}/feed.xml\n"
        "    publish: true\n    content: summary\n    tags: [upstream]\n"
    )
    pub = load_config(config)
    subscribe(pub, ("a@example.org", "Ann"))
    upstream.routes["/feed.xml"] = Route(
        body=rss(*map(item, range(2)), extra="<content:encoded xmlns:content="
                 "'http://purl.org/rss/1.0/modules/content/'>&lt;p&gt;The whole long text"
                 "&lt;/p&gt;</content:encoded>")
    )  # fmt: skip
    engine = store.connect(pub.database_url)
    try:
        assert poll(pub, engine, NOW_MOMENT.timestamp())[0].new == 2
    finally:
        engine.dispose()
    first = build(pub, NOW_MOMENT)
    assert not first.skipped, first.skipped
    feed = (pub.feeds_dir / "rss.xml").read_text()
    assert "<title>Story 0</title>" in feed and "https://up.example/1" in feed
    assert "The whole long text" not in feed  # content: summary
    assert "About Story 1" in feed
    front = (pub.site_dir / "index.html").read_text()
    assert 'href="https://up.example/0"' in front and "Story 0" in front
    assert not (pub.site_dir / "up-").exists()  # no page of its own: it links to the original
    again = build(pub, NOW_MOMENT)
    assert again.rendered == 0
    outbox = MemoryBackend({}, str(pub.root))
    hour = 0
    while send(pub, [outbox], NOW_MOMENT + timedelta(hours=hour)):  # bounded: 12 articles
        hour += 1
        assert hour < 5
    sent = [slug for slugs in issue_slugs(pub).values() for slug in slugs]
    assert len(sent) == len(set(sent)) == 12  # the example's ten and the source's two
    assert sum(slug.startswith("up-") for slug in sent) == 2
    # Edited upstream: the item follows; it is not sent again.
    upstream.routes["/feed.xml"] = Route(
        body=rss(("urn:up:0", "Story 0, corrected", "https://up.example/0"))
    )
    engine = store.connect(pub.database_url)
    try:
        assert poll(pub, engine, NOW_MOMENT.timestamp() + 3600)[0].new == 0
    finally:
        engine.dispose()
    edited = build(pub, NOW_MOMENT + timedelta(hours=hour))
    assert edited.rendered == 1
    assert "Story 0, corrected" in (pub.feeds_dir / "rss.xml").read_text()
    assert send(pub, [outbox], NOW_MOMENT + timedelta(hours=hour + 1)) == []


def test_include_and_exclude_filters_choose_the_entries(
    make: Callable[..., tuple[Publication, Engine]], upstream: Upstream
) -> None:
    tagged = "<category>Ferries</category>"
    pub, engine = make(
        source("only", "/a.xml", include="{tags: [ferries], words: [timetable]}"),
        source("not", "/b.xml", tags="[harbour]", exclude="{words: [sponsored]}"),
        source("by-own-tag", "/c.xml", tags="[harbour]", include="{tags: [Harbour]}"),
    )  # fmt: skip
    entries = [
        ("1", "New Timetable for winter", "https://up.example/1"),
        ("2", "Sponsored: a boat", "https://up.example/2"),
        ("3", "Weather", "https://up.example/3"),
    ]
    upstream.routes["/b.xml"] = Route(body=rss(*entries))
    upstream.routes["/c.xml"] = Route(body=rss(*entries))
    upstream.routes["/a.xml"] = Route(
        body=rss(*entries).replace(b"<guid>3</guid>", b"<guid>3</guid>" + tagged.encode())
    )
    done = by_name(poll(pub, engine, NOW))
    assert all(p.problem is None for p in done.values()), done
    # include: a tag (the entry's own category, case aside) or a word of the title.
    assert titles(engine, "only") == ["New Timetable for winter", "Weather"]
    assert titles(engine, "not") == ["New Timetable for winter", "Weather"]
    # The source's own tags count as the entry's.
    assert len(titles(engine, "by-own-tag")) == 3
    with engine.connect() as db:
        tags = {s.entry.title: s.entry.tags for s in shown_entries(db, ["only"])}
    assert tags["Weather"] == ("Ferries",)


def test_an_entry_listed_twice_in_one_feed_is_one_entry(
    make: Callable[..., tuple[Publication, Engine]], upstream: Upstream
) -> None:
    pub, engine = make(source("up", "/feed.xml"))
    upstream.routes["/feed.xml"] = Route(body=rss(item(1), item(2), item(1)))
    polled = poll(pub, engine, NOW)[0]
    assert (polled.new, polled.problem) == (2, None)
    assert titles(engine, "up") == ["Story 1", "Story 2"]
