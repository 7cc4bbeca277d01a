"""The pages of the web side: Jinja2 templates from the publication's ``templates/web``
folder, each falling back to the package's own. Plain, accessible HTML that works
without JavaScript and on a phone; autoescaped, with StrictUndefined, like the emails.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from starlette.responses import HTMLResponse

from publisher.config import Publication
from publisher.digest.templates import environment, render_template
from publisher.feeds.render import FILENAMES, LABELS, MEDIA_TYPES

DEFAULTS = Path(__file__).resolve().parent.parent / "defaults" / "web"


class Pages:
    """Renders the pages of one publication; the templates are compiled once."""

    def __init__(self, pub: Publication) -> None:
        self.env = environment(pub.web_templates_dir, DEFAULTS)
        site = pub.config.site
        feeds = [
            {"label": LABELS[kind], "type": MEDIA_TYPES[kind],
             "href": f"/feeds/{FILENAMES[kind]}"}
            for kind in pub.config.feeds.formats
        ]  # fmt: skip
        several = len(pub.config.digests) > 1
        archives = [
            {"label": f"Archive ({d.name})" if several else "Archive", "href": f"/issues/{d.name}/"}
            for d in pub.config.digests
        ]
        self.common: dict[str, Any] = {
            "site": site, "robots": "noindex", "feeds": feeds, "archives": archives,
            "subscribe": "/subscribe", "hubs": list(pub.config.feeds.hubs),
            "stylesheet": None,  # inline: a page of its own needs no second request
        }  # fmt: skip

    def render(self, template: str, title: str, status: int = 200, **context: Any) -> HTMLResponse:
        text = render_template(self.env, template, {**self.common, "title": title, **context})
        return HTMLResponse(text, status_code=status)

    def message(self, title: str, *paragraphs: str, status: int = 200) -> HTMLResponse:
        """A page that only says something; the paragraphs are plain text (escaped)."""
        return self.render("message.html", title, status, paragraphs=list(paragraphs))

    def check(self) -> None:
        """Render every page with sample values: a mistake in a publication's own
        template shows up in `publisher check`, not in front of a visitor."""
        sample_issue = {"number": 1, "date": "1 January 2026", "href": "/issues/x/1/",
                        "subject": "Sample"}  # fmt: skip
        sample_digest = {"digest": "x", "list": "x", "subscribers": 1, "next_run": None,
                         "articles_waiting": 1, "max_articles": 1, "held": "sample",
                         "issues": [{"number": 1, "status": "paused", "sent": 1, "deferred": 0,
                                     "failed": 0, "pending": 0, "sending": 0,
                                     "bounces": {"hard": 1, "soft": 1}, "complaints": 1,
                                     "due_by_hour": [{"hour": "2026-01-01T08:00:00+00:00",
                                                      "rows": 1}],
                                     "unsubscribes": 1,
                                     "reason": "sample", "why": [{"status": "deferred",
                                     "reply": "sample", "rows": 1}]}]}  # fmt: skip
        self.message("Sample", "A paragraph.")
        self.render("subscribe.html", "Sample", csrf="x", lists=["a", "b"], zones=["UTC"])
        self.render("confirm.html", "Sample")
        self.render("unsubscribe.html", "Sample", preferences="/preferences/x")
        self.render("preferences.html", "Sample", lists=[{"name": "a", "active": True}],
                    saved=True, timezone="UTC", zones=["UTC"])  # fmt: skip
        self.render("archive.html", "Sample", issues=[sample_issue])
        self.render("status.html", "Sample", digests=[sample_digest], confirmations="sample")


def fallback(title: str, text: str, status: int) -> HTMLResponse:
    """For errors: a page that needs no template, so a broken template cannot hide it."""
    body = (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head><body><main><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(text)}</p></main></body></html>"
    )
    return HTMLResponse(body, status_code=status)
