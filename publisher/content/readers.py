"""Article files -> ``Article``, one reader per file suffix (as Pelican chooses readers).

Every reader returns the same frozen ``Article`` with sanitized HTML; what differs is only
how title, date and body are found. Problems that make an article unpublishable raise
``ContentError`` with ``path:line``; problems that can be repaired are returned as warnings.
"""

from __future__ import annotations

import html
import mimetypes
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dateutil.parser
import pyromark

from publisher.characters import strip_forbidden
from publisher.config import Publication
from publisher.config.fields import parse_datetime
from publisher.content import slugify
from publisher.content.frontmatter import Split, split_front_matter
from publisher.content.links import (
    folder_url,
    published_file,
    resolve_references,
    rewrite_article_links,
)
from publisher.content.newstext import parse_news_text
from publisher.content.sanitize import sanitize_html
from publisher.content.source import read_source
from publisher.errors import ContentError, Problem
from publisher.model import Article, Image


@dataclass(frozen=True)
class Body:
    html: str
    raw: str = ""  # the HTML before it was sanitized: where its relative paths are found
    title: str | None = None
    title_line: int | None = None
    date_text: str | None = None
    date_line: int | None = None
    date_missing: bool = False  # a dateline whose date got lost: fall back to mtime
    removed: int = 0  # characters XML forbids, removed from the rendered HTML


@dataclass(frozen=True)
class Parsed:
    article: Article
    warnings: tuple[Problem, ...]
    used_mtime: bool


def read_article(path: Path, shown: str, pub: Publication) -> Parsed:
    """Read one article file. Raises ``ContentError`` when it cannot be published."""
    raw, info = read_source(str(path), str(pub.articles_dir), shown, pub.config.content.max_size)
    return decode_article(raw, path, shown, pub, info.st_mtime)


def decode_article(raw: bytes, path: Path, shown: str, pub: Publication, mtime: float) -> Parsed:
    """``parse_article`` for the bytes of a file: refuses text that is not UTF-8.

    Whatever goes wrong while reading one article is that article's error, never the
    build's: the file is skipped with its path and every other article is published.
    """
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ContentError([Problem(shown, line, "", "not UTF-8 text")]) from exc
    try:
        return parse_article(text, path, shown, pub, mtime)
    except ContentError:
        raise
    except Exception as exc:  # reported as this article's problem, not lost
        raise ContentError([unreadable(shown, exc)]) from exc


def unreadable(shown: str, exc: BaseException) -> Problem:
    """An unexpected failure on one article, as that article's problem."""
    return Problem(shown, None, "", f"cannot be published: {type(exc).__name__}: {exc}")


def parse_article(text: str, path: Path, shown: str, pub: Publication, mtime: float) -> Parsed:
    """Turn the text of one article file into an ``Article`` (no file access but images)."""
    warnings: list[Problem] = []
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text, removed, first = strip_forbidden(text)
    if removed:
        warnings.append(
            Problem(shown, first, "text", f"removed {removed} character(s) that XML forbids")
        )
    split = split_front_matter(text, shown)
    if split.removed:
        # YAML escapes ("\x07", "\u001b") can produce what the raw text did not contain.
        warnings.append(
            Problem(
                shown,
                split.removed_line,
                "front matter",
                f"removed {split.removed} character(s) that XML forbids",
            )
        )
    meta = split.meta
    for key in sorted(meta.model_extra or {}):
        warnings.append(Problem(shown, split.doc.line_of((key,)), key, "unknown key, ignored"))

    site = pub.config.site
    slug = _slug(meta.slug, path, shown, split)
    link = meta.link or site.base_url + site.permalink.format(slug=slug)
    reader = _READERS[path.suffix.lower()]
    # Relative paths resolve against the article's own folder (links.py), not its page.
    body = reader(split, shown, folder_url(pub, path))
    references = resolve_references(pub, path, shown, body.raw, split.body, split.body_line)
    warnings.extend(references.warnings)
    body_html = rewrite_article_links(body.html, references.articles)
    if body.removed:
        warnings.append(
            Problem(
                shown,
                split.body_line,
                "body",
                f"removed {body.removed} character(s) that XML forbids "
                "(written as character references)",
            )
        )

    title = " ".join((meta.title or body.title or "").split())
    if not title:
        raise ContentError([Problem(shown, 1, "title", "the article has no title")])

    used_mtime = False
    if meta.date is not None:
        date = _front_date(meta.date, "date", shown, split, site.zone)
    elif body.date_text:
        date = _dateline_date(body.date_text, shown, body.date_line, site.zone)
    elif body.date_missing:
        try:
            date = datetime.fromtimestamp(mtime, UTC).astimezone(site.zone)
        except (OverflowError, ValueError, OSError):
            what = (
                "the dateline has no date, and the file's modification time is not one: add 'date:'"
            )
            raise ContentError([Problem(shown, body.date_line, "date", what)]) from None
        date = date.replace(microsecond=0)
        used_mtime = True
        warnings.append(
            Problem(
                shown,
                body.date_line,
                "date",
                f"the dateline has no date and there is no 'date:'; "
                f"using the file's modification time {date.isoformat()}",
            )
        )
    else:
        raise ContentError(
            [Problem(shown, 1, "date", "the article has no date (add 'date: 2026-11-02')")]
        )
    date_line = split.doc.line_of(("date",)) if meta.date is not None else body.date_line
    _within_feeds(date, shown, date_line, "date")
    updated = (
        _front_date(meta.updated, "updated", shown, split, site.zone) if meta.updated else None
    )
    if updated is not None:
        _within_feeds(updated, shown, split.doc.line_of(("updated",)), "updated")
    if updated is not None and updated < date:
        warnings.append(
            Problem(shown, split.doc.line_of(("updated",)), "updated", "is before 'date'; ignored")
        )
        updated = None

    summary = _summary(meta.summary, body_html)
    image = _image(meta, path, shown, split, pub)
    files = list(references.files)
    if image is not None and meta.image is not None and not re.match(r"https?://", meta.image.src):
        lead = published_file(pub, path, meta.image.src)
        if lead is not None and lead not in files:
            files.insert(0, lead)
    tags = tuple(dict.fromkeys(" ".join(t.split()) for t in meta.tags if t.strip()))
    article = Article(
        slug=slug,
        title=title,
        date=date,
        updated=updated,
        author=meta.author,
        tags=tags,
        summary_html=summary,
        body_html=body_html,
        image=image,
        draft=meta.draft,
        link=link,
        source=shown,
        files=tuple(files),
        linked=tuple(sorted(references.sources.items())),
    )
    return Parsed(article, tuple(warnings), used_mtime)


# --- the three readers --------------------------------------------------------------------

# CommonMark with tables and ~~strikethrough~~. Raw HTML passes through to the sanitizer,
# which decides what stays.
_MARKDOWN_OPTIONS = pyromark.Options.ENABLE_TABLES | pyromark.Options.ENABLE_STRIKETHROUGH
_H1 = re.compile(r"^#[ \t]+(.+?)[ \t#]*$")


def _read_markdown(split: Split, shown: str, base: str) -> Body:
    text = split.body
    title = None
    title_line = None
    if split.meta.title is None:
        # No front-matter title: a leading "# Heading" is the title (and not repeated).
        lines = text.split("\n")
        for index, line in enumerate(lines):
            if line.strip():
                match = _H1.match(line)
                if match:
                    title, title_line = match.group(1), split.body_line + index
                    text = "\n".join(lines[index + 1 :])
                break
    rendered = pyromark.html(text, options=_MARKDOWN_OPTIONS)
    clean, removed = sanitize_html(rendered, base)
    return Body(clean, rendered, title, title_line, removed=removed)


def _read_html(split: Split, shown: str, base: str) -> Body:
    clean, removed = sanitize_html(split.body, base)
    return Body(clean, split.body, removed=removed)


def _read_news_text(split: Split, shown: str, base: str) -> Body:
    news = parse_news_text(split.body, split.body_line)
    if news is None:
        return Body("")
    parts = []
    for block in news.blocks:
        tag = "h2" if block.kind == "h" else "p"
        parts.append(f"<{tag}>{html.escape(block.text, quote=False)}</{tag}>")
    date_text, date_line, missing = None, None, False
    if news.datelines:
        # Prefer the first publication date; an "Updated on" line is the next best thing.
        ordered = sorted(news.datelines, key=lambda d: d[0] != "published")
        with_date = [d for d in ordered if d[1]]
        if with_date:
            date_text, date_line = with_date[0][1], with_date[0][2]
        else:
            missing, date_line = True, ordered[0][2]
    clean, removed = sanitize_html("\n".join(parts), base)
    return Body(clean, "", news.title, news.title_line, date_text, date_line, missing, removed)


_READERS: dict[str, Callable[[Split, str, str], Body]] = {
    ".md": _read_markdown,
    ".markdown": _read_markdown,
    ".html": _read_html,
    ".htm": _read_html,
    ".txt": _read_news_text,
}


# --- fields -------------------------------------------------------------------------------

_SLUG_OK = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def _slug(given: str | None, path: Path, shown: str, split: Split) -> str:
    if given is not None:
        if not _SLUG_OK.fullmatch(given):
            raise ContentError(
                [
                    Problem(
                        shown,
                        split.doc.line_of(("slug",)),
                        "slug",
                        f"'{given}' may hold only a-z, 0-9 and single hyphens",
                    )
                ]
            )
        return given
    slug = slugify(path.stem)
    if not slug:
        raise ContentError(
            [Problem(shown, 1, "slug", "cannot derive a slug from the file name; add 'slug:'")]
        )
    return slug


# What RSS (RFC 822 dates), Atom and JSON Feed (RFC 3339) and every reader can carry.
FIRST_YEAR, LAST_YEAR = 1970, 9999


def _within_feeds(moment: datetime, shown: str, line: int | None, where: str) -> None:
    try:
        year: int | None = moment.astimezone(UTC).year
    except (OverflowError, ValueError):  # 9999-12-31 23:59 -08:00 is past year 9999 in UTC
        year = None
    if year is None or not FIRST_YEAR <= year <= LAST_YEAR:
        what = (
            f"{moment.isoformat()} is outside what feeds can carry "
            f"(years {FIRST_YEAR} to {LAST_YEAR} in UTC)"
        )
        raise ContentError([Problem(shown, line, where, what)])


def _front_date(text: str, key: str, shown: str, split: Split, zone: Any) -> datetime:
    try:
        return parse_datetime(text, zone)
    except ValueError as exc:
        raise ContentError([Problem(shown, split.doc.line_of((key,)), key, str(exc))]) from None


_TZINFOS = {
    "UTC": 0, "GMT": 0, "Z": 0,
    "BST": 3600, "CET": 3600, "CEST": 7200,
    "EST": -5 * 3600, "EDT": -4 * 3600, "CST": -6 * 3600, "CDT": -5 * 3600,
    "MST": -7 * 3600, "MDT": -6 * 3600, "PST": -8 * 3600, "PDT": -7 * 3600,
}  # fmt: skip


def _dateline_date(text: str, shown: str, line: int | None, zone: Any) -> datetime:
    """Read a dateline date such as ``November 2, 2026 at 9:30 am EST``.

    Refuses what would be a guess: ``02/11/2026`` (2 November or February 11?) and dates
    without a day or a four-digit year (dateutil would fill them in from today).
    """
    clean = text.strip().rstrip("|·-–— ").strip()
    problem = None
    if re.search(r"\b\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\b", clean):
        problem = f"'{clean}' is ambiguous (day/month order); write the month as a word"
    elif not re.search(r"\b\d{4}\b", clean) or not re.search(r"(?<!\d)\d{1,2}(?!\d)", clean):
        problem = f"'{clean}' is not a complete date (day, month and year)"
    if problem is None:
        try:
            moment = dateutil.parser.parse(clean, tzinfos=_TZINFOS)
            moment.utcoffset()  # dateutil accepts offsets such as +9900 that datetime refuses
        except (ValueError, OverflowError):
            problem = f"'{clean}' is not a date (or its offset is not within ±24 hours)"
        else:
            return moment if moment.tzinfo else moment.replace(tzinfo=zone)
    raise ContentError([Problem(shown, line, "dateline", problem)])


_FIRST_PARAGRAPH = re.compile(r"<p>(.*?)</p>", re.S)


def _summary(given: str | None, body_html: str) -> str:
    if given:
        return html.escape(" ".join(given.split()), quote=False)
    match = _FIRST_PARAGRAPH.search(body_html)
    return match.group(1).strip() if match else ""


def _image(meta: Any, path: Path, shown: str, split: Split, pub: Publication) -> Image | None:
    image = meta.image
    if image is None:
        return None
    src: str = image.src
    line = split.doc.line_of(("image",))
    kind = image.type or mimetypes.guess_type(src)[0]
    if re.match(r"https?://", src):
        if not kind:
            raise ContentError([Problem(shown, line, "image", "add 'type:' (e.g. image/jpeg)")])
        return Image(src, kind, 0, image.alt)
    file = (path.parent / src).resolve()
    try:
        relative = file.relative_to(pub.root)
        length = file.stat().st_size
    except ValueError:
        raise ContentError(
            [Problem(shown, line, "image", f"'{src}' is outside the publication folder")]
        ) from None
    except OSError:
        raise ContentError([Problem(shown, line, "image", f"'{src}' does not exist")]) from None
    if not kind or not kind.startswith("image/"):
        raise ContentError([Problem(shown, line, "image", f"'{src}' is not a known image type")])
    return Image(pub.config.site.base_url + relative.as_posix(), kind, length, image.alt)
