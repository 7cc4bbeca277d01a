"""Article records -> the site's pages: one per article, the front page and a page per tag
(both paged). Pure but for reading templates: the records are the build cache's ``page``
blobs, the templates those of ``templates/web`` (each falling back to the package's own),
run sandboxed and autoescaped, with StrictUndefined, like every template here.

A page carries what a reader, a search engine and a feed reader look for: ``lang``, a
``<link rel=canonical>``, Open Graph tags and the feeds' autodiscovery links.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from markupsafe import Markup

from publisher.config import Publication
from publisher.content import plain_text, slugify
from publisher.digest.templates import environment, render_template
from publisher.feeds.render import FILENAMES, LABELS, MEDIA_TYPES

DEFAULTS = Path(__file__).resolve().parent.parent / "defaults" / "web"
TEMPLATES = ("base.html", "head.html", "style.css", "article.html", "index.html", "tag.html")


@dataclass(frozen=True)
class Listing:
    """One page of a list of articles (the front page, or a tag's): where it is, which
    records it shows, and its neighbours."""

    path: str  # below the site folder, e.g. "page/2/index.html"
    url: str
    number: int
    pages: int
    newer: str | None
    older: str | None


class SiteRenderer:
    """Renders the pages of one publication; the templates are compiled once."""

    def __init__(self, pub: Publication) -> None:
        self.pub = pub
        self.env = environment(pub.web_templates_dir, DEFAULTS)
        # The templates are those of `fingerprint`, read once: a page's inputs must not
        # change halfway through a build (and not looking again saves three stats a page).
        self.env.auto_reload = False
        self._tags: dict[str, dict[str, str] | None] = {}
        site = pub.config.site
        feeds = [
            {"label": LABELS[kind], "type": MEDIA_TYPES[kind],
             "href": pub.feeds_url + FILENAMES[kind]}
            for kind in pub.config.feeds.formats
        ]  # fmt: skip
        several = len(pub.config.digests) > 1
        archives = [
            {"label": f"Archive ({d.name})" if several else "Archive",
             "href": f"{site.base_url}issues/{d.name}/"}
            for d in pub.config.digests
        ]  # fmt: skip
        self.common: dict[str, Any] = {
            "site": site, "robots": "index, follow", "feeds": feeds, "archives": archives,
            "subscribe": f"{site.base_url}subscribe" if pub.config.digests else None,
            "hubs": list(pub.config.feeds.hubs),
            # One style sheet for every page (inlined, it was most of each page's bytes
            # and of its rendering time), from the site's root like its other links.
            "stylesheet": (urlsplit(site.base_url).path or "/") + "style.css",
        }  # fmt: skip

    def fingerprint(self) -> bytes:
        """What every page depends on besides its articles: the templates' text and the
        settings they show. A change of either renders every page again."""
        digest = hashlib.sha256()
        for name in TEMPLATES:
            source, _, _ = self.env.loader.get_source(self.env, name)  # type: ignore[union-attr]
            digest.update(name.encode() + b"\0" + source.encode() + b"\0")
        settings = {
            "site": self.pub.config.site.model_dump(mode="json"),
            "website": self.pub.config.website.model_dump(mode="json"),
            "feeds": self.common["feeds"], "archives": self.common["archives"],
            "subscribe": self.common["subscribe"], "hubs": self.common["hubs"],
        }  # fmt: skip
        digest.update(json.dumps(settings, sort_keys=True).encode())
        return digest.digest()

    def article(self, record: dict[str, Any]) -> bytes:
        article = _article(record, self.pub, self._tag)
        image = record["image"]
        meta = {
            "canonical": record["link"],
            "og": {
                "type": "article", "title": record["title"], "url": record["link"],
                "description": plain_text(record["summary"])[:300],
                "image": None if image is None else image["url"],
            },
        }  # fmt: skip
        return self._render("article.html", record["title"], article=article, **meta)

    def listing(
        self,
        records: list[dict[str, Any]],
        listing: Listing,
        tag: str | None = None,
        body: Callable[[int], str] | None = None,
    ) -> bytes:
        """A list page. The records hold what lists show; ``body(n)`` gives the body of
        the n-th, read only if the template shows it."""
        site = self.pub.config.site
        if tag is None:
            title = site.title if listing.number == 1 else f"{site.title}: page {listing.number}"
            template = "index.html"
        else:
            title = f"Tagged {tag}" + (f": page {listing.number}" if listing.number > 1 else "")
            template = "tag.html"
        og = {"type": "website", "title": title, "url": listing.url,
              "description": site.description, "image": None}  # fmt: skip
        paging = {"number": listing.number, "pages": listing.pages,
                  "newer": listing.newer, "older": listing.older}  # fmt: skip
        feeds = self.common["feeds"]
        if tag is not None and self._has_feed(tag):
            # The tag's own feeds first: what a reader on this page most likely wants.
            folder = f"{self.pub.feeds_url}tags/{slugify(tag)}/"
            feeds = [
                {"label": f"{LABELS[kind]}, {tag}", "type": MEDIA_TYPES[kind],
                 "href": folder + FILENAMES[kind]}
                for kind in self.pub.config.feeds.formats
            ] + feeds  # fmt: skip
        return self._render(
            template, title, canonical=listing.url, og=og, tag=tag, paging=paging,
            articles=[_card(r, self.pub, self._tag, n, body) for n, r in enumerate(records)],
            feeds=feeds,
        )  # fmt: skip

    def _tag(self, name: str) -> dict[str, str] | None:
        """A tag as pages link it (None: a tag with no letters, which has no page); the
        same few dozen tags come back on every page, so each is made once."""
        if name not in self._tags:
            slug = slugify(name)
            href = f"{self.pub.config.site.base_url}tags/{slug}/"
            self._tags[name] = {"name": name, "href": href} if slug else None
        return self._tags[name]

    def _has_feed(self, tag: str) -> bool:
        wanted = self.pub.config.feeds.tags
        if wanted == "none":
            return False
        return wanted == "all" or slugify(tag) in {slugify(t) for t in wanted}

    def stylesheet(self) -> bytes:
        """The site's ``style.css``, the web pages' own style sheet."""
        return render_template(self.env, "style.css", self.common).encode("utf-8")

    def check(self) -> None:
        """Render every page with a sample article: a mistake in a publication's own
        template shows up in `publisher check`, not in the middle of a build."""
        base = self.pub.config.site.base_url
        sample = {
            "slug": "sample", "title": "Sample", "date": "2026-01-01T00:00:00+00:00",
            "updated": None, "author": None, "tags": ["sample"], "summary": "<p>A summary.</p>",
            "body": "<p>A paragraph.</p>", "link": f"{base}sample/",
            "image": {"url": f"{base}sample.png", "alt": "A sample"},
        }  # fmt: skip
        self.article(sample)
        self.stylesheet()
        listing = Listing("index.html", base, 1, 2, None, f"{base}page/2/")
        self.listing([sample], listing)
        self.listing([sample], listing, tag="sample")

    def _render(self, template: str, title: str, **context: Any) -> bytes:
        text = render_template(self.env, template, {**self.common, "title": title, **context})
        return _site_relative(text, self.pub.config.site.base_url).encode("utf-8")


def _site_relative(page: str, base: str) -> str:
    """The page with its links into this site written from the site's root
    (``https://example.org/notes/a/`` -> ``/notes/a/``) in the body: the same page wherever
    it is served, the public host or `publisher serve` on a laptop. The head keeps them
    absolute, as canonical and Open Graph URLs must be."""
    at = page.find("<body")
    if at < 0:
        return page
    root = urlsplit(base).path or "/"
    body = (
        page[at:].replace(f'href="{base}', f'href="{root}').replace(f'src="{base}', f'src="{root}')
    )
    return page[:at] + body


def _article(
    record: dict[str, Any], pub: Publication, tags: Callable[[str], dict[str, str] | None]
) -> dict[str, Any]:
    return {
        "title": record["title"],
        "link": record["link"],
        "date": datetime.fromisoformat(record["date"]),
        "updated": None if record["updated"] is None else datetime.fromisoformat(record["updated"]),
        "author": record["author"] or pub.config.site.author.name,
        "tags": [tag for tag in map(tags, record["tags"]) if tag is not None],
        "summary": Markup(record["summary"]),
        "body": Markup(record["body"]),
        "image": record["image"],
    }


class _Card(dict[str, Any]):
    """An article on a list page: its body is read only when the template asks for it
    (`article.body`), as a publication's own front page may."""

    def __init__(self, fields: dict[str, Any], body: Callable[[], str]) -> None:
        super().__init__(fields)
        self._body = body  # not reachable from a template: the sandbox refuses "_"

    def __missing__(self, key: str) -> Any:
        if key != "body":
            raise KeyError(key)
        value = self["body"] = Markup(self._body())
        return value


def _card(
    record: dict[str, Any],
    pub: Publication,
    tags: Callable[[str], dict[str, str] | None],
    n: int,
    body: Callable[[int], str] | None,
) -> dict[str, Any]:
    if "body" in record or body is None:
        return _article({"body": "", **record}, pub, tags)
    fields = _article({**record, "body": ""}, pub, tags)
    del fields["body"]
    return _Card(fields, lambda: body(n))
