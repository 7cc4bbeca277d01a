"""A fetched feed's bytes -> its entries (``UpstreamEntry``). RSS 0.9x/1.0/2.0 and Atom
through feedparser, JSON Feed 1.0/1.1 (which feedparser does not read) as plain JSON. A
feed that is not well formed is an error for its source: nothing of it is taken.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import time
from datetime import UTC, datetime
from typing import Any

from publisher.model import UpstreamEntry

MAX_ENTRIES = 2000  # entries taken from one document: a feed is not an archive dump


class FeedError(ValueError):
    """The document is not a feed that can be read."""


def parse_feed(body: bytes, url: str, content_type: str = "") -> list[UpstreamEntry]:
    """The entries of the feed ``body`` fetched from ``url``, in the feed's order."""
    stripped = body.lstrip()
    if "json" in content_type.lower() or stripped.startswith(b"{"):
        return _json_feed(body, url)
    import feedparser  # loaded only when a source is fetched

    parsed = feedparser.parse(
        body, response_headers={"content-type": content_type or "application/xml",
                                "content-location": url},
    )  # fmt: skip
    # A declared encoding that was wrong, where another one read well: still a feed.
    benign = (feedparser.CharacterEncodingOverride,)
    if parsed.bozo and not isinstance(parsed.bozo_exception, benign):
        raise FeedError(f"not a feed that can be read: {_first_line(parsed.bozo_exception)}")
    if not parsed.version:
        raise FeedError("not an RSS, Atom or JSON feed")
    return [_entry(item, url) for item in parsed.entries[:MAX_ENTRIES]]


def _entry(item: Any, url: str) -> UpstreamEntry:
    link = str(item.get("link") or "")
    title = " ".join(str(item.get("title") or "").split())
    contents = item.get("content") or []
    content = str(contents[0].get("value") or "") if contents else ""
    summary = str(item.get("summary") or "")
    if summary == content:
        summary = ""  # RSS with only <content:encoded>: feedparser copies it to the summary
    tags = tuple(str(t.get("term") or "").strip() for t in item.get("tags") or [])
    return _made(
        str(item.get("id") or ""), link, title,
        _struct_date(item.get("published_parsed")),
        # dict.get: feedparser's own get() would answer the published date for a missing
        # updated one (and warn that it does).
        _struct_date(dict.get(item, "updated_parsed")),
        str(item.get("author") or "") or None, tags, summary, content, link or url,
    )  # fmt: skip


def _json_feed(body: bytes, url: str) -> list[UpstreamEntry]:
    try:
        feed = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FeedError(f"not a feed that can be read: {_first_line(exc)}") from None
    if not isinstance(feed, dict) or not str(feed.get("version", "")).startswith(
        "https://jsonfeed.org/version/1"
    ):
        raise FeedError("not an RSS, Atom or JSON feed")
    items = feed.get("items")
    if not isinstance(items, list):
        raise FeedError("a JSON Feed without items")
    entries = []
    for item in items[:MAX_ENTRIES]:
        if not isinstance(item, dict):
            continue
        link = _text(item.get("url"))
        authors = item.get("authors") or ([item["author"]] if item.get("author") else [])
        author = next((_text(a.get("name")) for a in authors if isinstance(a, dict)), "")
        content = _text(item.get("content_html"))
        if not content and item.get("content_text"):
            from html import escape

            content = "".join(
                f"<p>{escape(part)}</p>" for part in _text(item["content_text"]).split("\n\n")
            )
        tags: list[Any] = item["tags"] if isinstance(item.get("tags"), list) else []
        entries.append(
            _made(
                _text(item.get("id")),
                link,
                " ".join(_text(item.get("title")).split()),
                _iso_date(item.get("date_published")),
                _iso_date(item.get("date_modified")),
                author or None,
                tuple(_text(t).strip() for t in tags),
                _text(item.get("summary")),
                content,
                link or url,
            )
        )
    return entries


def _made(
    ident: str,
    link: str,
    title: str,
    published: str | None,
    updated: str | None,
    author: str | None,
    tags: tuple[str, ...],
    summary: str,
    content: str,
    base: str,
) -> UpstreamEntry:
    # Identity: the id the feed gives, else its link, else its title and link together.
    if ident:
        identity = _digest("id", ident)
    elif link:
        identity = _digest("link", link)
    else:
        identity = _digest("title", title, link)
    return UpstreamEntry(
        identity, _digest("same", link, title), title, link, published, updated, author,
        tuple(dict.fromkeys(t for t in tags if t)), summary, content, base,
    )  # fmt: skip


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _struct_date(value: time.struct_time | None) -> str | None:
    # feedparser gives every date it understood as a struct_time in UTC.
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), UTC).isoformat()
    except (OverflowError, ValueError, OSError):
        return None


def _iso_date(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
