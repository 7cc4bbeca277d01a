"""Sent issues as web pages (the "view in browser" link) and the operators' status page."""

from __future__ import annotations

import base64
import hmac
import os
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from publisher import store
from publisher.config import Publication
from publisher.delivery import Plan, compose_plan, keep_web_page
from publisher.digest.issue import Window
from publisher.errors import PublisherError
from publisher.store import ledger
from publisher.web.limits import SharedRateLimit, client_key
from publisher.web.pages import Pages

STATUS_PASSWORD_ENV = "PUBLISHER_STATUS_PASSWORD"


def index(pub: Publication, pages: Pages, engine: Engine, request: Request) -> Response:
    name = request.path_params["digest"]
    try:
        digest = pub.digest(name)
    except PublisherError:
        return pages.message("Not found", "There is no such digest.", status=404)
    with engine.connect() as db:
        sent = ledger.sent_issues(db, digest.name)
    issues = [
        {"number": number, "date": _day(composed), "subject": subject,
         "href": f"/issues/{digest.name}/{number}/"}
        for number, composed, subject in sent
    ]  # fmt: skip
    several = len(pub.config.digests) > 1
    title = f"Past issues: {digest.name}" if several else "Past issues"
    return pages.render("archive.html", title, issues=issues, robots="index, follow")


def issue(pub: Publication, pages: Pages, engine: Engine, request: Request) -> Response:
    name = request.path_params["digest"]
    try:
        digest = pub.digest(name)
        number = int(request.path_params["number"])
        if not 0 < number < 2**31:  # beyond any issue, and beyond what the database binds
            raise ValueError(number)
    except (PublisherError, ValueError):
        return pages.message("Not found", "There is no such issue.", status=404)
    with engine.connect() as db:
        row = ledger.find_issue(db, digest.name, number)
        if row is None:
            return pages.message("Not found", "There is no such issue.", status=404)
        kept = ledger.kept_page(db, row.id)
    if kept is None:  # an issue sent before pages were kept: composed once, then kept
        end = store.moment(row.window_end)
        assert end is not None
        window = Window(store.moment(row.window_start), end)
        plan = Plan(row.id, number, window, store.moment(row.created_at))
        kept = keep_web_page(engine, pub, digest, plan, compose_plan(engine, pub, digest, plan))
    return HTMLResponse(kept, headers={"Cache-Control": "public, max-age=3600"})


def _day(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%-d %B %Y")


def status(
    pub: Publication, pages: Pages, engine: Engine, request: Request, guesses: SharedRateLimit
) -> Response:
    password = os.environ.get(STATUS_PASSWORD_ENV, "")
    if not password:
        # The status page is off: it looks like any missing page.
        return pages.message("Not found", "There is no such page.", status=404)
    client = client_key(request)
    if guesses.blocked(client):
        response = pages.message("Too many attempts", "Please wait and try again.", status=429)
        response.headers["Retry-After"] = str(int(guesses.per))
        return response
    if not _authorized(request, password):
        if request.headers.get("authorization"):
            guesses.allow(client)  # counts a wrong password; asking for the prompt is free
        return Response(
            "authentication required", status_code=401,
            headers={"WWW-Authenticate": 'Basic realm="publisher status", charset="UTF-8"'},
        )  # fmt: skip
    from publisher.overview import (
        confirmation_line,
        confirmation_overview,
        digest_overview,
        workers_lines,
        workers_overview,
    )

    now = datetime.now(UTC)
    workers = None
    with engine.connect() as db:
        digests = [digest_overview(db, pub, digest, now) for digest in pub.config.digests]
        confirmations = confirmation_line(confirmation_overview(db, now))
        if pub.config.workers is not None:
            workers = workers_lines(workers_overview(db, now))
    response = pages.render("status.html", f"{pub.config.site.title}: status",
                            digests=digests, confirmations=confirmations,
                            workers=workers)  # fmt: skip
    response.headers["Cache-Control"] = "no-store"
    return response


def _authorized(request: Request, password: str) -> bool:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return False
    try:
        given = base64.b64decode(header[6:]).decode("utf-8").partition(":")[2]
    except (ValueError, UnicodeDecodeError):
        return False
    return hmac.compare_digest(given.encode(), password.encode())
