"""The news-text reader on our own fixtures: each .txt is paired with .expected.json."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from publisher.config import Publication
from publisher.content.newstext import parse_news_text
from publisher.content.readers import read_article
from publisher.errors import ContentError

DATA = Path(__file__).parent / "data" / "newstext"
CASES = sorted(p.stem for p in DATA.glob("*.txt"))
MTIME = datetime(2026, 1, 20, 6, 30, tzinfo=UTC)


@pytest.mark.parametrize("case", CASES)
def test_news_text_fixture(case: str, site: Callable[..., Publication]) -> None:
    pub = site()
    path = pub.articles_dir / f"{case}.txt"
    shutil.copy(DATA / f"{case}.txt", path)
    os.utime(path, (MTIME.timestamp(), MTIME.timestamp()))
    expected = json.loads((DATA / f"{case}.expected.json").read_text("utf-8"))
    if "error" in expected:
        with pytest.raises(ContentError) as caught:
            read_article(path, "x.txt", pub)
        assert [str(p) for p in caught.value.problems] == ["x.txt:" + expected["error"]]
        return
    parsed = read_article(path, "x.txt", pub)
    article = parsed.article
    stamp = MTIME.isoformat()
    assert article.title == expected["title"]
    assert article.date.isoformat() == expected["date"].replace("MTIME", stamp)
    assert [str(w) for w in parsed.warnings] == [
        "x.txt:" + w.replace("MTIME", stamp) for w in expected["warnings"]
    ]
    news = parse_news_text((DATA / f"{case}.txt").read_text("utf-8").split("---\n")[-1])
    assert news is not None
    assert [[b.kind, b.text] for b in news.blocks] == expected["blocks"]
    # The first real paragraph is the summary, and the HTML carries exactly these blocks.
    first = expected["blocks"][0][1]
    assert article.summary_html == first.replace("&", "&amp;")
    assert article.body_html.count("<h2>") == sum(k == "h" for k, _ in expected["blocks"])


def test_text_is_kept_exactly() -> None:
    text = "Títle — “quoted”\n\nPublished on 1 May 2026\n\nA\u00a0non-breaking space, ‘curly’ quotes, ß and 東京.\n"
    news = parse_news_text(text)
    assert news is not None
    assert news.title == "Títle — “quoted”"
    assert news.blocks[0].text == "A\u00a0non-breaking space, ‘curly’ quotes, ß and 東京."


def test_captions_trailers_and_headings() -> None:
    text = "\n\n".join(
        [
            "Title",
            "Updated on 4 June 2026",
            "First paragraph, a sentence.",
            "mayor on the harbour plan",  # caption leftover: dropped
            "A heading between paragraphs",
            "Second paragraph.",
            "A short sentence.",  # ends like a sentence: stays a paragraph
            "Third paragraph.",
            "Leave a Comment",
            "Share this",
            "Related: Another story",
        ]
    )
    news = parse_news_text(text)
    assert news is not None
    assert news.datelines == [("updated", "4 June 2026", 3)]
    assert [(b.kind, b.text) for b in news.blocks] == [
        ("p", "First paragraph, a sentence."),
        ("h", "A heading between paragraphs"),
        ("p", "Second paragraph."),
        ("p", "A short sentence."),
        ("p", "Third paragraph."),
    ]
    assert [t for _, t in news.dropped] == [
        "mayor on the harbour plan",
        "Leave a Comment",
        "Share this",
        "Related: Another story",
    ]


def test_only_unpunctuated_lowercase_lines_are_captions() -> None:
    text = "T\n\nintro para.\n\nthe end of an era\n\nlower case, but a sentence.\n\nalso one"
    news = parse_news_text(text)
    assert news is not None
    assert [b.text for b in news.blocks] == ["intro para.", "lower case, but a sentence."]
    assert news.dropped == [(5, "the end of an era"), (9, "also one")]
