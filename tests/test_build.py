"""Incremental builds and the command line, run as an operator would run them."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from publisher.build import build, load_articles
from publisher.cli import main
from publisher.config import Publication, load_config
from publisher.errors import ConfigError

from .conftest import NOW, ROOT, Ran


def test_rebuild_reads_only_changed_articles(example: Path) -> None:
    pub = load_config(example / "schedule.yaml")
    first = build(pub, NOW)
    assert (first.rendered, first.reused) == (12, 0)
    again = build(pub, NOW)
    assert (again.rendered, again.reused) == (0, 12)
    assert not any(f.written for f in again.feeds)  # nothing changed: no file rewritten

    path = pub.articles_dir / "welcome.md"
    path.write_text(path.read_text().replace("two bakeries", "three bakeries"))
    edited = build(pub, NOW)
    assert (edited.rendered, edited.reused) == (1, 11)
    assert b"three bakeries" in (pub.feeds_dir / "rss.xml").read_bytes()
    changed = {f.path.split("feeds/")[-1] for f in edited.feeds if f.written}
    assert changed == {
        "rss.xml",
        "atom.xml",
        "feed.json",
        "tags/about/rss.xml",
        "tags/about/atom.xml",
        "tags/about/feed.json",
    }


def test_a_config_change_renders_again(example: Path) -> None:
    pub = load_config(example / "schedule.yaml")
    build(pub, NOW)
    config = example / "schedule.yaml"
    config.write_text(config.read_text().replace("content: full", "content: summary"))
    report = build(load_config(config), NOW)
    assert report.rendered == 12


def test_mtime_dated_article_follows_its_mtime(site: Callable[..., Publication]) -> None:
    pub = site({"articles/n.txt": "Title\n\nUpdated on\n\nBody.\n"})
    path = pub.articles_dir / "n.txt"
    os.utime(path, (1_700_000_000, 1_700_000_000))
    assert build(pub, NOW).published[0].date.timestamp() == 1_700_000_000
    os.utime(path, (1_700_100_000, 1_700_100_000))
    report = build(pub, NOW)
    assert report.rendered == 1 and report.published[0].date.timestamp() == 1_700_100_000
    assert "modification time" in report.warnings[0].what


def test_parallel_and_serial_builds_agree(site: Callable[..., Publication]) -> None:
    files = {
        f"articles/p{i:03}.md": f"---\ntitle: P{i}\ndate: 2026-10-{1 + i % 28:02}\ntags: [t{i % 3}]\n---\nBody {i}.\n"
        for i in range(80)
    }
    pub = site(files)
    build(pub, NOW, jobs=2)
    parallel = {p: p.read_bytes() for p in sorted(pub.feeds_dir.rglob("*.*"))}
    (pub.state_dir / "build-cache.sqlite3").unlink()
    report = build(pub, NOW, jobs=1)
    assert report.rendered == 80
    assert {p: p.read_bytes() for p in sorted(pub.feeds_dir.rglob("*.*"))} == parallel


def test_bad_articles_in_a_batch_cost_only_themselves(
    site: Callable[..., Publication],
) -> None:
    """Articles are read in batches, each step for the whole batch: a file that fails at
    any step (not UTF-8, bad YAML, no title, a date no feed can carry) is skipped with its
    own error, and every other article of its batch is published with its own page."""
    broken = {
        0: b"\xff\xfe not text\n",
        1: b"---\ntitle: [unclosed\ndate: 2026-10-01\n---\nx\n",
        2: b"---\ndate: 2026-10-01\n---\n\nno title anywhere\n",
        3: b"---\ntitle: Far\ndate: 12026-10-01\n---\nx\n",
    }
    files: dict[str, str | bytes] = {}
    for i in range(150):
        name = f"articles/p{i:03}.md"
        if i % 7 == 3:
            files[name] = broken[(i // 7) % 4]
        else:
            files[name] = f"---\ntitle: P{i}\ndate: 2026-10-{1 + i % 28:02}\n---\nBody {i}.\n"
    pub = site(files)
    bad = {f"p{i:03}.md" for i in range(150) if i % 7 == 3}
    for jobs in (2, 1):
        (pub.state_dir / "build-cache.sqlite3").unlink(missing_ok=True)
        report = build(pub, NOW, jobs=jobs)
        assert report.rendered == 150
        assert {Path(p.path).name for p in report.skipped} == bad
        published = {e.slug for e in report.published}
        assert published == {f"p{i:03}" for i in range(150) if i % 7 != 3}
        for slug in published:  # each page is its own article's
            page = (pub.site_dir / slug / "index.html").read_text()
            assert f"<h1>P{int(slug[1:])}</h1>" in page and f"Body {int(slug[1:])}." in page


def test_cli_build_json(example: Path, cli: Callable[..., Ran]) -> None:
    (example / "articles" / "broken.md").write_text("---\ntitle: B\ndate: soon\n---\nx\n")
    done = cli("build", "--json", "--now", "2026-11-28T12:00:00Z", cwd=example)
    assert done.returncode == 1  # a skipped article is a reported problem
    report = json.loads(done.stdout)
    assert report["articles"] == 10
    assert report["skipped"] == [
        {
            "path": "articles/broken.md",
            "line": 3,
            "where": "date",
            "reason": "'soon' is not a date (write 2026-11-02 or 2026-11-02 09:30 or with an offset)",
        }
    ]
    main_rss = next(f for f in report["feeds"] if f["path"] == "feeds/rss.xml")
    assert main_rss["items"] == 10
    assert (example / "feeds" / "rss.xml").exists()
    assert done.stderr == ""


def test_cli_check_and_config_errors(example: Path, cli: Callable[..., Ran]) -> None:
    done = cli("check", "--now", "2026-11-28T12:00:00Z", cwd=example)
    assert done.returncode == 0, done.stderr
    assert "10 article(s) publishable" in done.stdout
    assert not (example / "feeds").exists()

    (example / "schedule.yaml").write_text("site:\n  title: T\n  url: nope\n  author: A\n")
    done = cli("build", cwd=example)
    assert done.returncode == 1
    assert done.stderr == "schedule.yaml:3: site.url: 'nope' is not an absolute http(s) URL\n"


def test_cli_config_option_and_environment(
    example: Path, tmp_path: Path, cli: Callable[..., Ran]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = cli("-c", str(example / "schedule.yaml"), "build", "--now", "2026-11-28", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert (example / "feeds" / "atom.xml").exists()
    env_run = cli("check", cwd=elsewhere, env={"PUBLISHER_CONFIG": str(example / "schedule.yaml")})
    assert env_run.returncode == 0, env_run.stderr


def test_cli_usage_errors() -> None:
    with pytest.raises(SystemExit) as caught:
        main(["build", "--now", "yesterday"])
    assert caught.value.code == 2
    assert main([]) == 2


def test_the_repository_is_a_working_publication(tmp_path: Path, cli: Callable[..., Ran]) -> None:
    # The README's first command builds the repository's own example; do the same on a copy.
    done = cli("-c", str(ROOT / "schedule.yaml"), "check", cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_check_reads_the_cache_and_creates_no_state(example: Path) -> None:
    pub = load_config(example / "schedule.yaml")
    assert build(pub, NOW, write=False).rendered == 12
    assert not pub.state_dir.exists() and not pub.feeds_dir.exists()
    build(pub, NOW)
    assert build(pub, NOW, write=False).reused == 12


def test_built_articles_can_be_loaded_back(example: Path) -> None:
    pub = load_config(example / "schedule.yaml")
    report = build(pub, NOW)
    articles = load_articles(pub, report.published[:2])
    assert [a.slug for a in articles] == [e.slug for e in report.published[:2]]
    assert articles[0].body_html.startswith("<p>")


def test_missing_content_folder(site: Callable[..., Publication]) -> None:
    pub = site()
    (pub.articles_dir).rmdir()
    with pytest.raises(ConfigError) as caught:
        build(pub, NOW)
    assert (
        str(caught.value) == f"schedule.yaml: content.folder: '{pub.articles_dir}' is not a folder"
    )


def test_paths_are_shown_from_where_the_operator_stands(
    site: Callable[..., Publication], monkeypatch: pytest.MonkeyPatch
) -> None:
    pub = site({"articles/sub/a.md": "---\ndate: 2026-11-01\n---\nno title\n"})
    monkeypatch.chdir(pub.articles_dir)
    assert [str(p) for p in build(pub, NOW).skipped] == [
        "sub/a.md:1: title: the article has no title"
    ]
