"""Markdown and HTML articles, sanitizing, and bad articles skipped with path:line."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from publisher.build import build
from publisher.characters import strip_forbidden
from publisher.config import Publication
from publisher.content.readers import read_article

from .conftest import NOW

GOOD = """\
---
title: Good
date: 2026-11-01
---
Fine.
"""


def messages(pub: Publication) -> list[str]:
    report = build(pub, NOW, write=False)
    return [str(p) for p in report.skipped]


def test_markdown_front_matter_tables_and_sanitizing(site: Callable[..., Publication]) -> None:
    pub = site(
        {
            "articles/tables.md": """\
            ---
            title: "Tables & <things>"
            date: 2026-11-01 09:30
            tags: [Harbour, harbour, " Open   Source "]
            ---
            Intro with a [relative link](/about) and <span onclick="x()">a span</span>.

            | a | b |
            |---|--:|
            | 1 | 2 |

            <script>alert(1)</script><a href="javascript:alert(2)">js</a>
            """
        }
    )
    parsed = read_article(pub.articles_dir / "tables.md", "tables.md", pub)
    article = parsed.article
    assert article.title == "Tables & <things>"
    assert article.date.isoformat() == "2026-11-01T09:30:00+00:00"
    assert article.tags == ("Harbour", "harbour", "Open Source")
    assert article.slug == "tables"
    assert article.link == "https://test.example/tables/"
    body = article.body_html
    assert '<a href="https://test.example/about" rel="noopener">relative link</a>' in body
    assert "<table>" in body and '<td style="text-align:right">2</td>' in body
    assert "onclick" not in body and "<script" not in body and "alert" not in body
    assert "javascript:" not in body
    assert article.summary_html.startswith("Intro with a <a href=")


def test_markdown_title_from_heading(site: Callable[..., Publication]) -> None:
    pub = site({"articles/h.md": "---\ndate: 2026-11-01\n---\n\n# The Heading\n\nBody.\n"})
    article = read_article(pub.articles_dir / "h.md", "h.md", pub).article
    assert article.title == "The Heading"
    assert "Heading" not in article.body_html


def test_html_article(site: Callable[..., Publication]) -> None:
    pub = site(
        {
            "articles/page.html": """\
            ---
            title: Page
            date: 2026-11-01T10:00:00+02:00
            summary: "A summary with <b>markup</b> & an ampersand"
            slug: the-page
            ---
            <p>Hello <img src="pic.png" onerror="x()"></p><style>p{}</style>
            """
        }
    )
    parsed = read_article(pub.articles_dir / "page.html", "page.html", pub)
    article = parsed.article
    assert article.slug == "the-page"
    assert article.date.utcoffset() is not None and article.date.hour == 10
    # A relative path resolves against the article's folder (and pic.png is not there).
    assert article.body_html == '<p>Hello <img src="https://test.example/articles/pic.png"></p>\n'
    assert [str(w) for w in parsed.warnings] == ["page.html:7: link: 'pic.png' does not exist"]
    assert article.summary_html == "A summary with &lt;b&gt;markup&lt;/b&gt; &amp; an ampersand"


def test_forbidden_characters_are_removed_with_a_warning(site: Callable[..., Publication]) -> None:
    pub = site(
        {"articles/c.md": '---\ntitle: "Bell\x07 and \x1b"\ndate: 2026-11-01\n---\nA\x00B\ufffe\n'}
    )
    parsed = read_article(pub.articles_dir / "c.md", "c.md", pub)
    assert parsed.article.title == "Bell and"
    assert parsed.article.body_html == "<p>AB</p>\n"
    assert [str(w) for w in parsed.warnings] == [
        "c.md:2: text: removed 4 character(s) that XML forbids"
    ]


def test_strip_forbidden_handles_surrogates_and_c1() -> None:
    assert strip_forbidden("a\ud800b\x85c\U0010ffff\n") == ("abc\n", 3, 1)


def test_bad_articles_are_skipped_and_the_rest_published(
    site: Callable[..., Publication], monkeypatch: pytest.MonkeyPatch
) -> None:
    pub = site(
        {
            "articles/good.md": GOOD,
            "articles/no-title.md": "---\ndate: 2026-11-01\n---\nNo heading here.\n",
            "articles/bad-date.md": "---\ntitle: T\ndate: 2026-13-45\n---\nx\n",
            "articles/no-date.html": "---\ntitle: T\n---\n<p>x</p>\n",
            "articles/unclosed.md": "---\ntitle: T\ndate: 2026-11-01\nBody\n",
            "articles/broken-yaml.md": "---\ntitle: [unclosed\ndate: 2026-11-01\n---\nx\n",
            "articles/list.md": "---\n- a\n---\nx\n",
            "articles/bad-slug.md": "---\ntitle: T\ndate: 2026-11-01\nslug: Not OK\n---\nx\n",
            "articles/dup/good.md": GOOD,
            "articles/binary.txt": b"Title\n\n\xff\xfe bad bytes\n",
            "articles/bad-draft.md": "---\ntitle: T\ndate: 2026-11-01\ndraft: maybe\n---\nx\n",
            "articles/missing-image.md": "---\ntitle: T\ndate: 2026-11-01\nimage: nope.png\n---\nx\n",
            "articles/empty.txt": "\n\n",
        }
    )
    monkeypatch.chdir(pub.root)  # paths are shown relative to where the operator stands
    # Two files claim one slug; no build has met either: the one modified first keeps it.
    os.utime(pub.root / "articles" / "dup" / "good.md", (1_000_000_000, 1_000_000_000))
    found = messages(pub)
    root = "articles/"
    expected = [
        f"{root}bad-date.md:3: date: '2026-13-45' is not a date (write 2026-11-02 or 2026-11-02 09:30 or with an offset)",
        f"{root}bad-draft.md:4: draft: 'maybe' is not true or false (write true/false, yes/no, on/off)",
        f"{root}bad-slug.md:4: slug: 'Not OK' may hold only a-z, 0-9 and single hyphens",
        f"{root}binary.txt:3: not UTF-8 text",
        f"{root}broken-yaml.md:3: yaml: while parsing a flow sequence did not find expected ',' or ']'",
        f"{root}empty.txt:1: title: the article has no title",
        f"{root}good.md:1: slug: 'good' is already used by {root}dup/good.md, which had it first",
        f"{root}list.md:2: front matter: must be a mapping such as 'title: ...'",
        f"{root}missing-image.md:4: image: 'nope.png' does not exist",
        f"{root}no-date.html:1: date: the article has no date (add 'date: 2026-11-02')",
        f"{root}no-title.md:1: title: the article has no title",
        f"{root}unclosed.md:1: front matter: no closing '---' line",
    ]
    assert found == expected
    report = build(pub, NOW, write=False)
    assert [e.slug for e in report.published] == ["good"]


def test_drafts_and_future_articles_wait(site: Callable[..., Publication]) -> None:
    pub = site(
        {
            "articles/now.md": GOOD,
            "articles/draft.md": "---\ntitle: D\ndate: 2026-11-01\ndraft: yes\n---\nx\n",
            "articles/future.md": "---\ntitle: F\ndate: 2026-11-28 12:00:01\n---\nx\n",
        }
    )
    assert [e.slug for e in build(pub, NOW, write=False).published] == ["now"]
    later = NOW.replace(hour=13)
    assert [e.slug for e in build(pub, later, write=False).published] == ["future", "now"]


def test_unknown_front_matter_keys_warn(site: Callable[..., Publication]) -> None:
    pub = site({"articles/a.md": "---\ntitle: A\ndate: 2026-11-01\ntittle: typo\n---\nx\n"})
    parsed = read_article(pub.articles_dir / "a.md", "a.md", pub)
    assert [str(w) for w in parsed.warnings] == ["a.md:4: tittle: unknown key, ignored"]


def test_lead_image(site: Callable[..., Publication]) -> None:
    pub = site(
        {
            "articles/img.md": "---\ntitle: I\ndate: 2026-11-01\nimage:\n  src: pics/a.png\n  alt: A\n---\nx\n",
            "articles/pics/a.png": b"\x89PNG fake but sized",
        }
    )
    image = read_article(pub.articles_dir / "img.md", "img.md", pub).article.image
    assert image is not None
    assert (image.url, image.type, image.length, image.alt) == (
        "https://test.example/articles/pics/a.png",
        "image/png",
        19,
        "A",
    )


def test_strip_forbidden_keeps_ordinary_non_ascii() -> None:
    text = "£5 \u00a0“quoted” é 東京 🙂\t\n"
    assert strip_forbidden(text) == (text, 0, None)
    assert strip_forbidden("a\ufdd0b\U0001fffe\x7f") == ("ab", 3, 1)


def test_one_rule_for_forbidden_characters_everywhere(tmp_path: Path) -> None:
    """Articles, schedule.yaml and headers agree (they once disagreed about U+FDD0-FDEF,
    and no rule knew the noncharacters of planes 2-15)."""
    from publisher.config import load_config
    from publisher.errors import ConfigError
    from publisher.headers import clean_text

    for bad in ("\ufdd0", "\ufffd", "\U0002fffe", "\U0010ffff", "\x01"):
        assert strip_forbidden(f"a{bad}b") == ("ab", 1, 1)
        assert clean_text(f"a{bad}b") == "a b"
        config = tmp_path / "schedule.yaml"
        escaped = f"\\U{ord(bad):08X}"  # a YAML escape: PyYAML refuses some of them raw
        config.write_text(
            f'site:\n  title: "T{escaped}"\n  url: https://t.example/\n  author: A\n', "utf-8"
        )
        with pytest.raises(ConfigError, match="contains the control character"):
            load_config(config)


def test_a_new_file_with_a_published_slug_does_not_take_it_over(
    example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from publisher.config import load_config

    pub = load_config(example / "schedule.yaml")
    monkeypatch.chdir(example)
    build(pub, NOW)
    welcome = (example / "articles" / "welcome.md").read_text()
    # A copy with a new title, the same slug and date, and a name that sorts first.
    (example / "articles" / "dup.md").write_text(
        welcome.replace("title: Welcome to Kestrel Bay Notes", "title: Impostor\nslug: welcome")
    )
    stat = (example / "articles" / "welcome.md").stat()
    os.utime(example / "articles" / "dup.md", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    for write in (True, False, True):  # a build, a check, and the build after
        report = build(pub, NOW, write=write)
        assert [str(p) for p in report.skipped] == [
            "articles/dup.md:1: slug: 'welcome' is already used by articles/welcome.md, "
            "which had it first"
        ]
    feed = (example / "feeds" / "rss.xml").read_text()
    assert "Welcome to Kestrel Bay Notes" in feed and "Impostor" not in feed
