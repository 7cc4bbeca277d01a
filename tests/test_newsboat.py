"""A real terminal feed reader (newsboat) loads every item of every feed we write."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from publisher.build import build
from publisher.config import load_config

from .conftest import NOW

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("newsboat") is None, reason="newsboat is not installed")
def test_newsboat_loads_every_item(example: Path, tmp_path: Path) -> None:
    pub = load_config(example / "schedule.yaml")
    report = build(pub, NOW)
    xml_feeds = [f for f in report.feeds if f.format != "json"]
    assert xml_feeds
    # One newsboat home per feed: newsboat stores an item once per guid, and the RSS and
    # Atom copies of an article rightly share theirs.
    for index, feed in enumerate(xml_feeds):
        url = (Path.cwd() / feed.path).resolve().as_uri()
        assert newsboat_items(tmp_path / f"home{index}", url) == feed.items, feed.path


def newsboat_items(home: Path, url: str) -> int:
    home.mkdir()
    (home / "urls").write_text(url + "\n")
    (home / "config").write_text("")
    log = home / "newsboat.log"
    subprocess.run(
        [
            "newsboat",
            "-u",
            str(home / "urls"),
            "-c",
            str(home / "cache.db"),
            "-C",
            str(home / "config"),
            "-l",
            "4",
            "-d",
            str(log),
            "-x",
            "reload",
        ],
        env={"HOME": str(home), "TERM": "dumb", "PATH": "/usr/bin:/bin"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
        check=True,
    )
    errors = [line for line in log.read_text(errors="replace").splitlines() if "ERROR" in line]
    assert errors == [], url
    with sqlite3.connect(home / "cache.db") as db:
        (count,) = db.execute("SELECT count(*) FROM rss_item WHERE feedurl = ?", (url,)).fetchone()
    return int(count)


@pytest.mark.skipif(shutil.which("newsboat") is None, reason="newsboat is not installed")
@pytest.mark.parametrize("name", ["atom.xml", "rss.xml"])
def test_newsboat_loads_the_whole_history(example: Path, tmp_path: Path, name: str) -> None:
    """The feed holds the newest 4; it and its RFC 5005 archives hold all 10 articles."""
    config = example / "schedule.yaml"
    config.write_text(
        config.read_text().replace(
            "  items: 20          # newest 20 per feed; 0 = every article",
            "  items: 4\n  archive_size: 3",
        )
    )
    pub = load_config(config)
    report = build(pub, NOW)
    documents = [pub.feeds_dir / name, *sorted((pub.feeds_dir / "archive").glob(f"*/{name}"))]
    assert len(documents) == 5
    home = tmp_path / "home"
    home.mkdir()
    (home / "urls").write_text("".join(d.resolve().as_uri() + "\n" for d in documents))
    (home / "config").write_text("")
    subprocess.run(
        ["newsboat", "-u", str(home / "urls"), "-c", str(home / "cache.db"),
         "-C", str(home / "config"), "-x", "reload"],
        env={"HOME": str(home), "TERM": "dumb", "PATH": "/usr/bin:/bin"},
        stdin=subprocess.DEVNULL, capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    with sqlite3.connect(home / "cache.db") as db:
        guids = {guid for (guid,) in db.execute("SELECT guid FROM rss_item")}
    assert len(guids) == len(report.published) == 10
