"""The example publication's feeds: golden bytes, read back by feedparser, repeatable."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import feedparser
import pytest
from lxml import etree

from publisher.build import CACHE_FILE, build
from publisher.config import Publication, load_config

from .conftest import NOW

GOLDEN = Path(__file__).parent / "golden" / "example-feeds"


def built_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".gitignore"
    }


def test_golden_feeds(example: Path, update_golden: bool) -> None:
    pub = load_config(example / "schedule.yaml")
    build(pub, NOW)
    produced = built_files(pub.feeds_dir)
    if update_golden:
        shutil.rmtree(GOLDEN, ignore_errors=True)
        for name, data in produced.items():
            (GOLDEN / name).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / name).write_bytes(data)
    expected = built_files(GOLDEN)
    assert sorted(produced) == sorted(expected)
    for name, data in produced.items():
        assert data.decode() == expected[name].decode(), f"{name} differs from its golden copy"


def test_every_feed_parses_cleanly_with_unique_ids(example: Path) -> None:
    pub = load_config(example / "schedule.yaml")
    report = build(pub, NOW)
    assert len(report.published) == 10
    assert not report.skipped
    for feed in report.feeds:
        path = Path(feed.path) if Path(feed.path).is_absolute() else Path.cwd() / feed.path
        if feed.format == "json":
            data = json.loads(path.read_bytes())
            ids = [item["id"] for item in data["items"]]
            assert data["version"] == "https://jsonfeed.org/version/1.1"
        else:
            parsed = feedparser.parse(path.read_bytes())
            assert parsed.bozo == 0, (feed.path, parsed.get("bozo_exception"))
            ids = [entry.id for entry in parsed.entries]
            for entry in parsed.entries:
                assert entry.title and entry.link and entry.get("published_parsed")
        assert len(ids) == feed.items == len(set(ids)), feed.path


def test_main_feed_order_limit_and_tags(example: Path) -> None:
    pub = load_config(example / "schedule.yaml")
    build(pub, NOW)
    main = feedparser.parse((pub.feeds_dir / "atom.xml").read_bytes())
    dates = [e.published_parsed for e in main.entries]
    assert dates == sorted(dates, reverse=True)
    titles = [e.title for e in main.entries]
    assert "Advent market on the quay" not in titles  # dated 5 December
    assert not any("draft" in t for t in titles)
    harbour = feedparser.parse((pub.feeds_dir / "tags/harbour/rss.xml").read_bytes())
    assert {e.title for e in harbour.entries} == {
        "The lighthouse gets its stripes back",
        "“You can’t hurry larch”: a morning with the last boatbuilder",
    }


def test_enclosure_keeps_its_attributes_in_atom(example: Path) -> None:
    # feedgen 1.0 drops rel/type/length on Atom links (python-feedgen#135).
    pub = load_config(example / "schedule.yaml")
    build(pub, NOW)
    tree = etree.parse(str(pub.feeds_dir / "atom.xml"))
    ns = {"a": "http://www.w3.org/2005/Atom"}
    enclosures = tree.findall(".//a:entry/a:link[@rel='enclosure']", ns)
    assert len(enclosures) == 1
    attrs = dict(enclosures[0].attrib)
    assert attrs["type"] == "image/png" and attrs["length"] == "1147"
    assert attrs["href"].endswith("/articles/images/lighthouse.png")
    for entry in tree.findall(".//a:entry", ns):
        assert len(entry.findall("a:link[@rel='alternate']", ns)) == 1
    rss = feedparser.parse((pub.feeds_dir / "rss.xml").read_bytes())
    with_image = [e for e in rss.entries if e.get("enclosures")]
    assert with_image[0].enclosures[0]["length"] == "1147"


def test_same_input_same_bytes(example: Path, tmp_path: Path) -> None:
    pub = load_config(example / "schedule.yaml")
    build(pub, NOW)
    first = built_files(pub.feeds_dir)
    shutil.rmtree(pub.state_dir)  # no cache: everything rendered again
    shutil.rmtree(pub.feeds_dir)
    build(pub, NOW.replace(hour=20))  # later the same day: nothing new is due
    assert built_files(pub.feeds_dir) == first


def test_summary_mode_and_item_limit(site: Callable[..., Publication]) -> None:
    config = (
        "site:\n  title: S\n  url: https://s.example/\n  author: A\n"
        "feeds:\n  content: summary\n  items: 2\n  formats: [atom, json]\n  tags: [news, absent]\n"
    )
    files = {
        f"articles/a{i}.md": f"---\ntitle: A{i}\ndate: 2026-11-0{i}\ntags: [News]\n---\n"
        f"First {i}.\n\nSecond {i}.\n"
        for i in range(1, 5)
    }
    pub = site(files, config=config)
    build(pub, NOW)
    atom = feedparser.parse((pub.feeds_dir / "atom.xml").read_bytes())
    assert [e.title for e in atom.entries] == ["A4", "A3"]
    assert "content" not in atom.entries[0] and atom.entries[0].summary == "First 4."
    assert not (pub.feeds_dir / "rss.xml").exists()
    data = json.loads((pub.feeds_dir / "feed.json").read_bytes())
    assert data["items"][0]["content_html"] == "First 4."
    # A listed tag without articles still gets its (empty) feed.
    empty = feedparser.parse((pub.feeds_dir / "tags/absent/atom.xml").read_bytes())
    assert empty.bozo == 0 and empty.entries == []
    assert empty.feed.updated == "1970-01-01T00:00:00+00:00"


def test_only_the_published_formats_are_rendered(site: Callable[..., Publication]) -> None:
    """A format left out of feeds.formats costs nothing (no fragment made or kept), and
    turning it on later renders every article for it."""
    head = "site:\n  title: S\n  url: https://s.example/\n  author: A\n"
    files = {"articles/a.md": "---\ntitle: A\ndate: 2026-11-01\n---\nBody.\n"}
    pub = site(files, config=head + "feeds:\n  formats: [rss]\n")
    build(pub, NOW)
    with sqlite3.connect(pub.state_dir / CACHE_FILE) as db:
        kinds = {kind for (kind,) in db.execute("SELECT DISTINCT kind FROM blobs")}
    assert kinds == {"rss", "page"}
    (pub.root / "schedule.yaml").write_text(head + "feeds:\n  formats: [rss, atom]\n")
    pub = load_config(pub.root / "schedule.yaml")
    build(pub, NOW)
    atom = feedparser.parse((pub.feeds_dir / "atom.xml").read_bytes())
    assert atom.bozo == 0 and [e.title for e in atom.entries] == ["A"]
    (pub.root / "schedule.yaml").write_text(head + "feeds:\n  formats: [atom]\n")
    pub = load_config(pub.root / "schedule.yaml")
    build(pub, NOW)
    with sqlite3.connect(pub.state_dir / CACHE_FILE) as db:
        kinds = {kind for (kind,) in db.execute("SELECT DISTINCT kind FROM blobs")}
    assert kinds == {"atom", "page"}  # the RSS fragments went with RSS


def test_stale_tag_feeds_are_removed(site: Callable[..., Publication]) -> None:
    pub = site({"articles/a.md": "---\ntitle: A\ndate: 2026-11-01\ntags: [gone]\n---\nx\n"})
    build(pub, NOW)
    assert (pub.feeds_dir / "tags/gone/rss.xml").exists()
    (pub.articles_dir / "a.md").write_text("---\ntitle: A\ndate: 2026-11-01\n---\nx\n")
    (pub.feeds_dir / "keep-me.txt").write_text("not ours")
    build(pub, NOW)
    assert not (pub.feeds_dir / "tags").exists()
    assert (pub.feeds_dir / "keep-me.txt").exists()


@pytest.mark.parametrize("fmt", ["rss", "atom"])
def test_feed_self_links(example: Path, fmt: str) -> None:
    pub = load_config(example / "schedule.yaml")
    build(pub, NOW)
    name = "rss.xml" if fmt == "rss" else "atom.xml"
    text = (pub.feeds_dir / "tags/food" / name).read_text()
    assert f'href="https://notes.kestrelbay.example/feeds/tags/food/{name}" rel="self"' in text
