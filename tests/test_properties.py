"""Whatever text an article holds, the feeds stay well-formed and parseable."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import feedparser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from publisher.config import Publication, load_config
from publisher.content.readers import parse_article
from publisher.feeds.render import Author, Channel, render_entry, render_feed

CONFIG = "site:\n  title: P\n  url: https://p.example/\n  author: A\n"
# Every code point, control characters and lone surrogates included.
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=300)


def publication(tmp: Path) -> Publication:
    (tmp / "schedule.yaml").write_text(CONFIG)
    return load_config(tmp / "schedule.yaml")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    title=ANY_TEXT, body=ANY_TEXT, tag=ANY_TEXT, suffix=st.sampled_from([".md", ".html", ".txt"])
)
def test_any_unicode_gives_parseable_feeds(
    tmp_path: Path, title: str, body: str, tag: str, suffix: str
) -> None:
    pub = publication(tmp_path)
    text = (
        f"---\ntitle: {json.dumps(title)}\ndate: 2026-11-01\ntags: [{json.dumps(tag)}]\n---\n{body}"
    )
    try:
        parsed = parse_article(text, tmp_path / f"a{suffix}", f"a{suffix}", pub, 0.0)
    except Exception as exc:  # noqa: BLE001 - a ContentError is fine, anything else is not
        from publisher.errors import ContentError

        assert isinstance(exc, ContentError), repr(exc)
        return
    entry = render_entry(parsed.article, True, Author("A"))
    channel = Channel("P", "", "https://p.example/", "https://p.example/feeds/", "en", Author("A"))
    for kind in ("rss", "atom"):
        data = render_feed(kind, channel, [entry], parsed.article.modified)
        etree.fromstring(data)  # well-formed XML 1.0
        result = feedparser.parse(data)
        assert result.bozo == 0, result.get("bozo_exception")
        assert len(result.entries) == 1
    feed = json.loads(render_feed("json", channel, [entry], None))
    assert len(feed["items"]) == 1


@given(title=ANY_TEXT.filter(lambda t: t.strip()))
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_titles_survive_round_trip(tmp_path: Path, title: str) -> None:
    pub = publication(tmp_path)
    text = f"---\ntitle: {json.dumps(title)}\ndate: 2026-11-01\n---\nbody"
    try:
        parsed = parse_article(text, tmp_path / "a.md", "a.md", pub, 0.0)
    except Exception:  # noqa: BLE001 - titles made only of forbidden characters are refused
        return
    entry = render_entry(parsed.article, True, Author("A"))
    channel = Channel("P", "", "https://p.example/", "https://p.example/feeds/", "en", Author("A"))
    tree = etree.fromstring(render_feed("atom", channel, [entry], None))
    # The feed carries exactly the cleaned title (whitespace folded). lxml, not feedparser:
    # feedparser "repairs" text that merely looks like double-encoded UTF-8 ("Â¡").
    found = tree.find("{http://www.w3.org/2005/Atom}entry/{http://www.w3.org/2005/Atom}title")
    assert found is not None and found.text == parsed.article.title
    assert datetime(2026, 11, 1, tzinfo=UTC) == parsed.article.date
