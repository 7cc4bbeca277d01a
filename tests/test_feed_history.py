"""RFC 5005 feed history: besides each feed (the newest items), archive documents hold
every article, oldest first, so that a feed reader can walk back through all of it."""

from __future__ import annotations

import json
from pathlib import Path

import feedparser

from publisher.build import build
from publisher.config import Publication, load_config

from .conftest import NOW

BASE = "https://notes.kestrelbay.example/feeds/"
HISTORY = "http://purl.org/syndication/history/1.0"


def small_feeds(example: Path) -> Publication:
    config = example / "schedule.yaml"
    config.write_text(
        config.read_text().replace(
            "  items: 20          # newest 20 per feed; 0 = every article",
            "  items: 4\n  archive_size: 3",
        )
    )
    return load_config(config)


def local(pub: Publication, url: str) -> Path:
    assert url.startswith(BASE), url
    return pub.feeds_dir / url[len(BASE) :]


def walk_atom(pub: Publication, start: str) -> tuple[list[str], int]:
    """Every entry link from the feed at ``start`` back through its prev-archive links;
    and how many documents that took."""
    links: list[str] = []
    url: str | None = start
    documents = 0
    while url is not None and documents < 100:  # bounded: a loop in the links fails here
        parsed = feedparser.parse(local(pub, url).read_bytes())
        assert not parsed.bozo, parsed.bozo_exception
        documents += 1
        links += [entry.link for entry in parsed.entries]
        url = next((link.href for link in parsed.feed.links if link.rel == "prev-archive"), None)
    return links, documents


def test_a_reader_can_walk_back_through_every_article(example: Path) -> None:
    pub = small_feeds(example)
    report = build(pub, NOW)
    published = {f"https://notes.kestrelbay.example/articles/{e.slug}/" for e in report.published}
    links, documents = walk_atom(pub, BASE + "atom.xml")
    assert set(links) == published and len(published) == 10
    assert documents == 1 + 4  # the feed, and 10 articles 3 to a document
    current = feedparser.parse(local(pub, BASE + "atom.xml").read_bytes())
    assert len(current.entries) == 4  # the feed itself still holds the newest 4
    archive = (pub.feeds_dir / "archive" / "2" / "atom.xml").read_text()
    assert f'xmlns:fh="{HISTORY}"' in archive and "<fh:archive/>" in archive
    assert f'<link href="{BASE}atom.xml" rel="current"' in archive
    assert f'<link href="{BASE}archive/3/atom.xml" rel="next-archive"' in archive
    rss = (pub.feeds_dir / "archive" / "1" / "rss.xml").read_text()
    assert f'<atom:link href="{BASE}rss.xml" rel="current"' in rss and "<fh:archive/>" in rss
    assert "prev-archive" not in rss  # the oldest has none


def test_json_feed_pages_lead_to_the_older_items(example: Path) -> None:
    pub = small_feeds(example)
    report = build(pub, NOW)
    seen: list[str] = []
    url: str | None = BASE + "feed.json"
    while url is not None and len(seen) < 1000:  # bounded
        document = json.loads(local(pub, url).read_text())
        seen += [item["url"] for item in document["items"]]
        url = document.get("next_url")
    assert len(set(seen)) == len(report.published)


def test_full_archive_documents_do_not_change(example: Path) -> None:
    pub = small_feeds(example)
    build(pub, NOW)

    def stamps() -> dict[str, int]:
        return {
            p.relative_to(pub.feeds_dir).as_posix(): p.stat().st_mtime_ns
            for p in (pub.feeds_dir / "archive").rglob("*")
            if p.is_file()
        }

    first = stamps()
    for n in range(2):
        (example / "articles" / f"new-{n}.md").write_text(
            f"---\ntitle: New {n}\ndate: 2026-11-28 0{n}:00\n---\nText.\n"
        )
        build(pub, NOW)
    after = stamps()
    full = [
        f"archive/{n}/{name}" for n in (1, 2, 3) for name in ("rss.xml", "atom.xml", "feed.json")
    ]
    assert all(after[path] == first[path] for path in full)  # documents 1-3 are full: untouched
    # 12 articles: the fourth document filled up; the fifth is not there yet.
    assert "archive/5/atom.xml" not in after
    fourth = feedparser.parse((pub.feeds_dir / "archive" / "4" / "atom.xml").read_bytes())
    assert len(fourth.entries) == 3


def test_no_archives_while_the_feed_holds_every_article(example: Path) -> None:
    pub = load_config(example / "schedule.yaml")  # 20 items, 10 articles
    build(pub, NOW)
    assert not (pub.feeds_dir / "archive").exists()
    assert "prev-archive" not in (pub.feeds_dir / "atom.xml").read_text()
