"""Sent issues as web pages (the "view in browser" link) and the operators' status page."""

from __future__ import annotations

import base64
import hmac
import html
import os
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.engine import Engine
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from publisher import store
from publisher.config import Publication
from publisher.delivery import issue_articles
from publisher.digest import Window, compose_issue
from publisher.errors import PublisherError
from publisher.web.pages import page

STATUS_PASSWORD_ENV = "PUBLISHER_STATUS_PASSWORD"


def index(pub: Publication, engine: Engine, request: Request) -> Response:
    name = request.path_params["digest"]
    try:
        digest = pub.digest(name)
    except PublisherError:
        return page("Not found", "<p>There is no such digest.</p>", 404)
    with engine.connect() as db:
        rows = db.execute(
            select(store.issues.c.number, store.issues.c.window_end)
            .where(store.issues.c.digest == digest.name, store.issues.c.status == "done")
            .order_by(store.issues.c.number.desc())
        ).all()
    items = "".join(
        f'<li><a href="/issues/{html.escape(digest.name)}/{row.number}/">Issue {row.number}</a>'
        f" — {_day(row.window_end)}</li>"
        for row in rows
    )
    body = f"<ul>{items}</ul>" if items else "<p>No issue has been sent yet.</p>"
    return page(f"{pub.config.site.title}: {digest.name}", body)


def issue(pub: Publication, engine: Engine, request: Request) -> Response:
    name = request.path_params["digest"]
    try:
        digest = pub.digest(name)
        number = int(request.path_params["number"])
    except (PublisherError, ValueError):
        return page("Not found", "<p>There is no such issue.</p>", 404)
    with engine.connect() as db:
        row = db.execute(
            select(store.issues).where(store.issues.c.digest == digest.name,
                                       store.issues.c.number == number)
        ).first()  # fmt: skip
    if row is None:
        return page("Not found", "<p>There is no such issue.</p>", 404)
    end = store.moment(row.window_end)
    assert end is not None
    window = Window(store.moment(row.window_start), end)
    articles = issue_articles(pub, digest, window, end)
    composed = compose_issue(pub, digest, articles, number, window, end)
    # The web view has no per-recipient parts: no name, and no one's unsubscribe link.
    text = composed.html.replace(composed.markers["name"], "reader").replace(
        composed.markers["unsubscribe_url"], "/subscribe"
    )
    return HTMLResponse(text)


def _day(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%-d %B %Y")


def status(pub: Publication, engine: Engine, request: Request) -> Response:
    password = os.environ.get(STATUS_PASSWORD_ENV, "")
    if not password:
        return page("Not found", "<p>There is no such page.</p>", 404)  # status page disabled
    if not _authorized(request, password):
        return Response(
            "authentication required", status_code=401,
            headers={"WWW-Authenticate": 'Basic realm="publisher status", charset="UTF-8"'},
        )  # fmt: skip
    from publisher.overview import confirmation_line, confirmation_overview, digest_overview

    parts = []
    now = datetime.now(UTC)
    with engine.connect() as db:
        for digest in pub.config.digests:
            entry = digest_overview(db, pub, digest, now)
            upcoming = f"; next run {entry['next_run']}" if entry["next_run"] else ""
            lines = "".join(
                f"<li>#{i['number']} {html.escape(i['status'])}: sent {i['sent']}, deferred "
                f"{i['deferred']}, failed {i['failed']}, pending {i['pending']}</li>"
                for i in entry["issues"]
            )
            parts.append(
                f"<h2>{html.escape(digest.name)}</h2><p>list {html.escape(digest.list_name)}: "
                f"{entry['subscribers']} subscriber(s){html.escape(upcoming)}</p><ul>{lines}</ul>"
            )
        parts.append(f"<p>{html.escape(confirmation_line(confirmation_overview(db, now)))}</p>")
    return page(f"{pub.config.site.title}: status", "".join(parts))


def _authorized(request: Request, password: str) -> bool:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return False
    try:
        given = base64.b64decode(header[6:]).decode("utf-8").partition(":")[2]
    except (ValueError, UnicodeDecodeError):
        return False
    return hmac.compare_digest(given.encode(), password.encode())
