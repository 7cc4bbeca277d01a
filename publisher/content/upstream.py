"""Upstream entries -> ``Article``s, by the rules every article follows: the HTML through
the same allow-list sanitizer (links made absolute against the entry's base), the
characters XML forbids removed, dates in UTC and the site's zone. Pure: the entries come
from the state database, where `publisher sources fetch` recorded them."""

from __future__ import annotations

import html
from datetime import UTC, datetime

from publisher.characters import strip_forbidden
from publisher.config import Publication
from publisher.config.models import Source
from publisher.content import plain_text
from publisher.content.sanitize import sanitize_html
from publisher.model import Article, UpstreamEntry

SUMMARY_CHARACTERS = 300  # a summary made from the text, cut at a word
# Where an upstream entry stands in the build cache and the catalog: never a file's path
# (those are absolute).
PREFIX = "sources/"


def upstream_name(source: str, identity: str) -> str:
    return f"{PREFIX}{source}/{identity}"


def is_upstream(name: str) -> bool:
    return name.startswith(PREFIX)


def upstream_article(
    pub: Publication, index: int, source: Source, first_seen: float, entry: UpstreamEntry
) -> Article:
    """The article of ``entry`` of ``source`` (the ``index``-th of schedule.yaml's
    sources), first seen at ``first_seen``. Its slug is derived from the source and the
    entry's identity: the same on every build, so a digest sends it once."""
    full, _ = sanitize_html(entry.content or entry.summary, entry.base)
    teaser, _ = sanitize_html(entry.summary, entry.base) if entry.summary else (full, 0)
    words = _text(plain_text(teaser))
    short = html.escape(_shorten(words, SUMMARY_CHARACTERS), quote=False)
    body = full
    if source.content == "summary":  # the summary only, however much the feed carries
        body = teaser if entry.summary else f"<p>{short}</p>"
    zone = pub.config.site.zone
    date = _moment(entry.published, first_seen).astimezone(zone)
    updated = _moment(entry.updated, first_seen).astimezone(zone) if entry.updated else None
    title = _text(entry.title) or _shorten(words, 80) or entry.link or source.name
    tags = tuple(dict.fromkeys(t for t in (*map(_text, entry.tags), *source.tags) if t))
    return Article(
        slug=f"{source.name}-{entry.identity[:16]}",
        title=title,
        date=date,
        updated=updated if updated is not None and updated > date else None,
        author=_text(entry.author or "") or None,
        tags=tags,
        summary_html=short,
        body_html=body,
        image=None,
        draft=False,
        link=entry.link or source.url,
        source=f"sources[{index}] ({source.name})",
    )


def _moment(iso: str | None, fallback: float) -> datetime:
    # A date the feed gave (already UTC), else the first time the entry was seen.
    if iso:
        try:
            return datetime.fromisoformat(iso)
        except ValueError:
            pass
    return datetime.fromtimestamp(fallback, UTC).replace(microsecond=0)


def _text(value: str) -> str:
    return " ".join(strip_forbidden(value)[0].split())


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut + "…"
