"""A digest issue: articles of one window, rendered once, encoded once.

Pure: articles, settings and a moment in; an ``Issue`` (subject, inlined HTML, text, the
encoded message with per-recipient slots, lint warnings) out. Templates are operator-edited
files, so Jinja2 runs sandboxed, with autoescaping for HTML and StrictUndefined; premailer
inlines the CSS once per issue and is not allowed to fetch anything.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from markupsafe import Markup

from publisher.config import Digest, Publication
from publisher.content import plain_text
from publisher.digest.message import (
    MARKER_PREFIX,
    MessageTemplate,
    build_message,
    scrub_markers,
    slot_marker,
)
from publisher.digest.templates import TemplateError, environment, render_string, render_template
from publisher.errors import Problem
from publisher.headers import clean_text, encode_text, format_address, parse_sender
from publisher.model import Article

# Per-recipient values; everything else in a message is the same for every recipient.
SLOTS = ("name", "unsubscribe_url")
GMAIL_CLIP_BYTES = 100_000  # Gmail clips HTML parts past ~102 KB, often cutting the footer


@dataclass(frozen=True)
class Window:
    """Articles dated after ``start`` (exclusive; None: from the beginning) up to ``end``
    (inclusive). Consecutive issues share their boundary, so none is sent twice or skipped."""

    start: datetime | None
    end: datetime

    def __contains__(self, moment: datetime) -> bool:
        return (self.start is None or moment > self.start) and moment <= self.end


class Candidate(Protocol):
    """What choosing an issue's articles looks at: a full ``Article``, or the build's small
    record of one (so that only the chosen few are read from their files)."""

    @property
    def date(self) -> datetime: ...
    @property
    def slug(self) -> str: ...
    @property
    def tags(self) -> tuple[str, ...]: ...
    @property
    def draft(self) -> bool: ...


C = TypeVar("C", bound=Candidate)


@dataclass(frozen=True)
class Selection(Generic[C]):
    """An issue's articles, and the published ones that would be in it but for
    ``max_articles``, newest first."""

    chosen: list[C]
    rest: list[C]


def select_articles(
    items: Sequence[C],
    digest: Digest,
    until: datetime,
    sent: frozenset[str] = frozenset(),
    sent_until: datetime | None = None,
) -> Selection[C]:
    """The articles of the next issue, the one place this is decided: published by
    ``until``, matching the digest's tags, and not sent by the digest yet (``sent``: the
    slugs its issues hold; ``sent_until``: every article dated up to it was sent by the
    issues from before articles were recorded), newest first, at most ``max_articles``.
    The date of an article does not keep it out: one filed late or backdated is in the
    next issue."""
    wanted = {t.casefold() for t in digest.tags}
    chosen = [
        a
        for a in items
        if not a.draft
        and a.date <= until
        and a.slug not in sent
        and (sent_until is None or a.date > sent_until)
        and (not wanted or any(t.casefold() in wanted for t in a.tags))
    ]
    chosen.sort(key=lambda a: (a.date, a.slug), reverse=True)
    return Selection(chosen[: digest.max_articles], chosen[digest.max_articles :])


def in_window(items: Sequence[C], digest: Digest, window: Window) -> list[C]:
    """The articles an issue from before articles were recorded held: those dated in its
    window (for the archive's page of such an issue)."""
    start = window.start
    before = [a for a in items if start is None or a.date > start]
    return select_articles(before, digest, window.end).chosen


@dataclass(frozen=True)
class Shape:
    """The issue as rendered for one kind of recipient: inlined HTML and text with slot
    markers where per-recipient values go, and the message encoded from them."""

    html: str
    text: str
    message: MessageTemplate


@dataclass
class Issue:
    digest: str
    number: int
    window: Window
    articles: list[Article]
    subject: str
    markers: dict[str, str]
    # Rendered twice: for recipients with a name (``recipient.name`` is a slot) and for
    # those without (``recipient.name`` is empty, so ``{% if recipient.name %}`` and
    # ``recipient.name or "reader"`` work). Each is still rendered once per issue.
    named: Shape
    unnamed: Shape
    sender: tuple[str, str]
    list_id: str
    # When it was composed: the Date of its messages, unless a recipient's copy is dated
    # by their own first hour (a local-time digest; see Letters).
    date: datetime
    warnings: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.digest}-{self.number}"

    @property
    def html(self) -> str:
        return self.named.html

    @property
    def text(self) -> str:
        return self.named.text

    @property
    def message(self) -> MessageTemplate:
        return self.named.message

    def shape(self, name: str) -> Shape:
        """The shape for a recipient whose (cleaned) name is ``name``."""
        return self.named if name else self.unnamed


def compose_issue(
    pub: Publication,
    digest: Digest,
    articles: list[Article],
    number: int,
    window: Window,
    now: datetime,
    archived: bool = False,
) -> Issue:
    """Render, inline and encode one issue. Raises ``TemplateError`` for a bad template.
    With ``archived``, the issue as its web page in the archive: the templates see
    ``archived`` true and leave out what only a recipient needs (the footer that says why
    they get it, the unsubscribe link)."""
    site = pub.config.site
    key = f"{digest.name}-{number}"
    # New, unguessable markers for every issue, and no article text that looks like one:
    # an article must never be able to place a recipient's token where it wants (an image
    # URL on its own server, say).
    markers = {name: slot_marker(name) for name in SLOTS}
    articles = [_without_markers(a) for a in articles]
    archive = pub.config.email.archive_url
    web_url = archive.format(digest=digest.name, number=number) if archive else ""
    local = now.astimezone(site.zone)
    context: dict[str, Any] = {
        "site": {
            "title": site.title,
            "url": site.base_url,
            "description": site.description,
            "language": site.language,
        },
        "digest": digest.name,
        "issue": {"number": number, "date": local, "start": window.start, "end": window.end},
        "articles": [_article_context(a, digest.content == "full") for a in articles],
        "first": _article_context(articles[0], False) if articles else None,
        "web_url": web_url,
        "unsubscribe_url": markers["unsubscribe_url"],
        "archived": archived,
    }
    env = environment(pub.templates_dir)
    # The subject is one header for every recipient: no recipient in it.
    subject = clean_text(
        render_string(env, digest.subject, context, pub.path.name,
                      *_setting(pub, digest, "subject")),
        250,
    )  # fmt: skip
    context["subject"] = subject
    # The default preheader is an article's text, never run as a template: braces in an
    # article are the article's.
    plain_preheader = clean_text(
        plain_text(articles[0].summary_html) if articles else site.description, 250
    )
    name, address = parse_sender(digest.sender)
    list_id = f"<{digest.list_name}.{_domain(site.base_url)}>"
    head = _common_headers(pub, digest, subject, name, address, list_id, key)
    warnings: list[str] = []
    shapes: list[Shape] = []
    named_raw = ("", "")
    for recipient_name in (markers["name"], ""):
        context["recipient"] = {"name": recipient_name}
        context["preheader"] = plain_preheader if digest.preheader is None else clean_text(
            render_string(env, digest.preheader, context, pub.path.name,
                          *_setting(pub, digest, "preheader")),
            250,
        )  # fmt: skip
        raw_html = render_template(env, f"{digest.template}.html", context)
        text = render_template(env, f"{digest.template}.txt", context)
        if recipient_name:
            named_raw = (raw_html, text)
            html, css_warnings = inline_css(raw_html)
            warnings = lint(html, text, markers) + css_warnings
        elif (raw_html, text) == tuple(part.replace(markers["name"], "") for part in named_raw):
            # The template only prints the name: the same page without it, not inlined
            # again (inlining is most of the cost of an issue).
            html = shapes[0].html.replace(markers["name"], "")
        else:
            html, _ = inline_css(raw_html)
        message = build_message(head, [("plain", text), ("html", html)], markers, key)
        shapes.append(Shape(html, text, message))
    return Issue(
        digest=digest.name,
        number=number,
        window=window,
        articles=articles,
        subject=subject,
        markers=markers,
        named=shapes[0],
        unnamed=shapes[1],
        sender=(name, address),
        list_id=list_id,
        date=now,
        warnings=warnings,
    )


def _setting(pub: Publication, digest: Digest, key: str) -> tuple[str, int | None]:
    """Where a digest's setting is in schedule.yaml: its name as config errors give it
    (``digests[0].subject``) and its line (the digest's, when the setting is a default)."""
    for index, configured in enumerate(pub.config.digests):
        if configured.name == digest.name:
            line = pub.line_of("digests", index, key) or pub.line_of("digests", index)
            return f"digests[{index}].{key}", line
    return f"digest {digest.name}: {key}", None


def _without_markers(article: Article) -> Article:
    image = article.image
    texts = [article.title, article.summary_html, article.body_html, article.link]
    texts += [article.author or "", *article.tags, *((image.url, image.alt) if image else ())]
    if not any(MARKER_PREFIX in text.upper() for text in texts):
        return article
    return dataclasses.replace(
        article,
        title=scrub_markers(article.title),
        summary_html=scrub_markers(article.summary_html),
        body_html=scrub_markers(article.body_html),
        link=scrub_markers(article.link),
        author=scrub_markers(article.author) if article.author else article.author,
        tags=tuple(scrub_markers(t) for t in article.tags),
        image=image
        and dataclasses.replace(image, url=scrub_markers(image.url), alt=scrub_markers(image.alt)),
    )


def _domain(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0]


def _common_headers(
    pub: Publication,
    digest: Digest,
    subject: str,
    name: str,
    address: str,
    list_id: str,
    key: str,
) -> list[str]:
    # No Date: it is the recipient's (``Letters.letter``), with To and Message-ID.
    lines = [
        f"From: {format_address(name, address)}",
        f"Subject: {encode_text(subject)}",
        f"List-Id: {encode_text(pub.config.site.title)} {list_id}",
        # RFC 8058: the POST to the List-Unsubscribe URL unsubscribes in one click.
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        f"X-Publisher-Issue: {key}",
    ]
    if digest.reply_to:
        reply_name, reply_address = parse_sender(digest.reply_to)
        lines.insert(1, f"Reply-To: {format_address(reply_name, reply_address)}")
    return lines


def _article_context(article: Article, full: bool) -> dict[str, Any]:
    return {
        "title": article.title,
        "link": article.link,
        "date": article.date,
        "author": article.author,
        "tags": list(article.tags),
        "summary": Markup(article.summary_html),
        "body": Markup(article.body_html) if full else None,
        "image": None
        if article.image is None
        else {"url": article.image.url, "alt": article.image.alt},
    }


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def inline_css(html: str) -> tuple[str, list[str]]:
    """Inline the CSS of ``<style>`` blocks; keep media queries; fetch nothing.

    Returns the HTML and a warning for every CSS rule or property the inliner dropped.
    """
    import cssutils  # premailer's CSS parser; by default it also prints to stderr

    collector = _Collect()
    quiet = logging.getLogger("publisher.cssutils")
    quiet.propagate = False
    cssutils.log.setLog(quiet)
    try:
        inlined = _inliner_class()(
            html,
            allow_network=False,  # a <link rel=stylesheet href=http://...> is never fetched
            allow_loading_external_files=False,
            disable_link_rewrites=True,
            remove_classes=False,  # media queries still need the classes
            strip_important=False,  # and !important to beat the inlined styles on phones
            keep_style_tags=False,
            cssutils_logging_handler=collector,
            cssutils_logging_level=logging.WARNING,
        ).transform()
    except Exception as exc:  # premailer raises many kinds; every one is a template problem
        raise TemplateError(
            [Problem("template", None, "css", f"cannot inline CSS: {exc}")]
        ) from exc
    output = str(inlined)
    warnings = []
    for message in collector.messages:
        # cssutils does not know vendor properties such as mso-hide, but premailer keeps
        # them: only what is really missing from the output was dropped.
        named = re.search(r"\[[\d:]+: ([\w-]+)\]$", message)
        if named and f"{named.group(1)}:" in output:
            continue
        warnings.append(f"CSS dropped by the inliner: {message}")
    # At-rules cannot be inlined; premailer keeps @media but silently drops others
    # (@font-face, @import, @supports, @keyframes): say so.
    styles = _COMMENT.sub("", "".join(_STYLE.findall(html)))
    for rule in sorted(set(_AT_RULE.findall(styles))):
        kept = len(_AT_RULE_NAMED(rule).findall(output))
        wanted = len(_AT_RULE_NAMED(rule).findall(styles))
        if kept < wanted:
            warnings.append(f"CSS dropped by the inliner: {wanted - kept} @{rule} rule(s)")
    return output, warnings


def _fetch_nothing(url: str) -> None:
    """cssutils' fetcher for ``@import``: refuses every URL. (premailer's
    ``allow_network=False`` covers ``<link>`` only; cssutils fetched each ``@import`` of a
    ``<style>`` block by itself, at every check, preview and send.) The rule is then
    reported as dropped, which ``inline_css`` turns into a warning."""
    return None


@functools.lru_cache(maxsize=32)
def _parse_css(css: str, validate: bool) -> Any:
    # One parse per distinct style sheet in a process, as premailer's own cache does.
    import cssutils

    return cssutils.CSSParser(fetcher=_fetch_nothing, validate=validate).parseString(css)


@functools.cache
def _inliner_class() -> type:
    from premailer import Premailer

    class Inliner(Premailer):  # type: ignore[misc]
        def _parse_css_string(self, css_body: str, validate: bool = True) -> Any:
            return _parse_css(css_body, validate)

    return Inliner


_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.S | re.I)
_AT_RULE = re.compile(r"@([a-z-]+)", re.I)
_COMMENT = re.compile(r"/\*.*?\*/", re.S)


def _AT_RULE_NAMED(name: str) -> re.Pattern[str]:
    return re.compile(r"@" + re.escape(name) + r"\b", re.I)


def lint(html: str, text: str, markers: dict[str, str]) -> list[str]:
    """What would hurt delivery or readers, found before anything is sent."""
    found = []
    size = len(html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        found.append(
            f"HTML part is {size:,} bytes: Gmail clips past ~100 KB, usually cutting off the "
            "unsubscribe link (lower max_articles or use content: summary)"
        )
    for part, body in (("HTML", html), ("text", text)):
        leftover = re.search(r"\{\{|\}\}|\{%|%\}|\{#|#\}", body)
        if leftover:
            line = body.count("\n", 0, leftover.start()) + 1
            found.append(f"{part} part, line {line}: leftover template syntax {leftover.group()!r}")
        if markers["unsubscribe_url"] not in body:
            found.append(f"{part} part has no unsubscribe link (use {{{{ unsubscribe_url }}}})")
    if (
        re.search(r"""href=["']?""" + re.escape(markers["unsubscribe_url"]), html) is None
        and markers["unsubscribe_url"] in html
    ):
        found.append("HTML part shows the unsubscribe URL but not as a link")
    return found
