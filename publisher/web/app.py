"""Routes: the feeds (with HTTP caching) and one-click unsubscribe (RFC 8058).

Every answer carries security headers; errors never show a stack trace to a visitor.
"""

from __future__ import annotations

import mimetypes
import time
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from publisher import store
from publisher.config import Publication
from publisher.feeds.render import FILENAMES, MEDIA_TYPES
from publisher.subscribers import normalize_zone, zone_choices
from publisher.tokens import UNSUBSCRIBE, Signer
from publisher.web import archive
from publisher.web import subscribe as signup
from publisher.web.limits import SharedRateLimit
from publisher.web.pages import DEFAULTS, Pages, fallback
from publisher.web.returns import routes as returned_mail

PREFERENCES = "preferences"  # the token purpose of preference links
KEEP_ZONE = "keep"  # a preferences POST that says nothing of the time zone (no IANA name)
# The sign-up form's one script: it fills the time zone field with the browser's zone.
ZONE_SCRIPT = (DEFAULTS / "zone.js").read_bytes()
# Feed files by name (rss.xml, atom.xml, feed.json, in every tag folder too); anything
# else the feeds folder holds by suffix.
FEED_TYPES = {FILENAMES[kind]: f"{MEDIA_TYPES[kind]}; charset=utf-8" for kind in FILENAMES}
SUFFIX_TYPES = {".xml": "application/xml; charset=utf-8", ".json": "application/json"}
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; style-src 'self' 'unsafe-inline'; "
     b"script-src 'self'; img-src 'self' https: data:; form-action 'self'; "
     b"frame-ancestors 'none'; base-uri 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]  # fmt: skip


class SecurityHeaders:
    def __init__(self, app: ASGIApp, hsts: int = 0) -> None:
        self.app = app
        self.headers = list(SECURITY_HEADERS)
        if hsts:
            # Only for a publication served over TLS (web.hsts): browsers then refuse
            # plain HTTP to this host for max-age seconds.
            self.headers.append((b"strict-transport-security", f"max-age={hsts}".encode()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), *self.headers]
                # Any answer may be gzipped; the gzip middleware says so only on those it
                # compressed, not on small ones or 304s, which caches must key alike.
                if not any(name.lower() == b"vary" for name, _ in headers):
                    headers.append((b"vary", b"Accept-Encoding"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(pub: Publication, signer: Signer, engine: Engine | None = None) -> Starlette:
    database = engine or store.open_database(pub)
    pages = Pages(pub)
    not_valid = ("This link is not valid",
                 "The link may be incomplete or altered. Nothing was changed.")  # fmt: skip

    # Handlers that read the database or render pages are plain functions, which Starlette
    # runs in its thread pool; those that await a form hand their database work to the
    # pool. Nothing blocks the event loop, which serves everyone. A feed costs the loop one
    # stat (a 304 nothing more: 3,200 answers/s here, 1,500 through the pool); the file
    # itself is streamed by FileResponse, which reads in the pool.
    async def feed(request: Request) -> Response:
        return _feed_file(pub, pages, request)

    async def unsubscribe(request: Request) -> Response:
        token = request.path_params["token"]
        public_id = signer.verify(UNSUBSCRIBE, token)
        if public_id is None:
            return pages.message(*not_valid, status=400)
        if request.method == "GET":
            # A GET only shows the button: mail scanners that follow links unsubscribe nobody.
            preferences = f"/preferences/{signer.sign(PREFERENCES, public_id)}"
            return pages.render("unsubscribe.html", "Unsubscribe", preferences=preferences)
        form = await request.form()
        if form.get("List-Unsubscribe") != "One-Click":
            return pages.message("Unsubscribe", "Nothing was changed.", status=400)
        await run_in_threadpool(_unsubscribe, database, public_id)
        # RFC 8058 §3.2: answer the POST itself, no redirect; repeating it changes nothing.
        return pages.message("Unsubscribed", "You will receive no more emails from this list.")

    limits = SharedRateLimit(database, "signup")

    async def subscribe(request: Request) -> Response:
        if request.method == "GET":
            return await run_in_threadpool(signup.form_page, pub, pages, signer, request)
        return await signup.subscribe(pub, pages, signer, database, limits, request)

    async def confirm(request: Request) -> Response:
        return await signup.confirm(pub, pages, signer, database, request)

    def issues_index(request: Request) -> Response:
        return archive.index(pub, pages, database, request)

    def issue_page(request: Request) -> Response:
        return archive.issue(pub, pages, database, request)

    # Wrong passwords per client: a few, then 429 for a while, so the password cannot be
    # guessed at the speed of the server.
    guesses = SharedRateLimit(database, "password", limit=10, per=600)

    def status_page(request: Request) -> Response:
        return archive.status(pub, pages, database, request, guesses)

    async def preferences(request: Request) -> Response:
        public_id = signer.verify(PREFERENCES, request.path_params["token"])
        offered = signup.lists_of(pub)
        if public_id is None:
            return pages.message(*not_valid, status=400)
        wanted: set[str] | None = None
        zone: str | None = KEEP_ZONE
        if request.method == "POST":
            form = await request.form()
            wanted = {str(v) for v in form.getlist("list")} & set(offered)
            if "timezone" in form:  # a form without the field leaves the zone as it is
                given = str(form["timezone"]).strip()
                try:
                    zone = normalize_zone(given) if given else None
                except ValueError as exc:
                    what = f"{exc}. Nothing was changed: go back and choose one from the list."
                    return pages.message("Check the time zone", what, status=400)
        return await run_in_threadpool(_preferences, public_id, wanted, zone, offered)

    def _preferences(
        public_id: str, wanted: set[str] | None, zone: str | None, offered: list[str]
    ) -> Response:
        with database.begin() as db:
            current = store.lists_of_subscriber(db, public_id)
            if current is not None and wanted is not None:
                store.set_lists(db, public_id, wanted, offered, time.time())
                if zone != KEEP_ZONE:
                    store.set_zone(db, public_id, zone)
                current = store.lists_of_subscriber(db, public_id)
            kept = store.zone_of_subscriber(db, public_id)
        if current is None:
            return pages.message(*not_valid, status=400)
        lists = [{"name": name, "active": current.get(name) == "active"} for name in offered]
        return pages.render("preferences.html", "Your subscriptions", lists=lists,
                            saved=wanted is not None, timezone=kept or "",
                            zones=zone_choices())  # fmt: skip

    def zone_script(request: Request) -> Response:
        return Response(ZONE_SCRIPT, media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})  # fmt: skip

    async def not_found(request: Request, exc: Exception) -> Response:
        # /issues/weekly -> /issues/weekly/ (and back). Starlette's own redirect names the
        # host from the Host header, which anyone can set: ours is relative.
        path = request.url.path
        other = path[:-1] if path.endswith("/") else path + "/"
        # Never "//host/...": a browser would read that as another site.
        if request.method in ("GET", "HEAD") and not other.startswith("//") and _routed(app, other):
            query = request.url.query
            location = quote(other) + (f"?{query}" if query else "")
            return Response(status_code=307, headers={"Location": location})
        # The site the build wrote: what no route answers.
        return _site_file(pub, request) or pages.message(
            "Not found", "There is no such page.", status=404
        )

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return pages.message("Not allowed", "That method is not allowed here.", status=405)

    routes = [
        Route("/preferences/{token}", preferences, methods=["GET", "POST"]),
        Route("/issues/{digest}/", issues_index),
        Route("/issues/{digest}/{number}/", issue_page),
        Route("/status", status_page),
        Route("/feeds/{path:path}", feed, methods=["GET", "HEAD"]),
        Route("/unsubscribe/{token}", unsubscribe, methods=["GET", "POST"]),
        Route("/subscribe", subscribe, methods=["GET", "POST"]),
        Route("/zone.js", zone_script),
        Route("/confirm/{token}", confirm, methods=["GET", "POST"]),
        *returned_mail(pub, signer, database),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders, hsts=pub.config.web.hsts),
            Middleware(GZipMiddleware, minimum_size=500),
        ],
        exception_handlers={Exception: _error, 404: not_found, 405: not_allowed},
    )
    app.router.redirect_slashes = False
    app.state.limits, app.state.guesses = limits, guesses  # for the operator's eyes and tests
    return app


def _routed(app: Starlette, path: str) -> bool:
    scope: Scope = {"type": "http", "path": path, "method": "GET"}
    return any(route.matches(scope)[0] is Match.FULL for route in app.router.routes)


def _unsubscribe(engine: Engine, public_id: str) -> None:
    with engine.begin() as db:
        store.unsubscribe_everywhere(db, public_id, time.time())


def _feed_file(pub: Publication, pages: Pages, request: Request) -> Response:
    served = _file(pub.feeds_dir, request.path_params["path"], request)
    return served or pages.message("Not found", "There is no such feed.", status=404)


def _site_file(pub: Publication, request: Request) -> Response | None:
    """A page or file of the site the build wrote, for a path no route has; None when
    there is none. A folder's page is its index.html; the folder without its slash is
    redirected to it."""
    if not pub.config.website.enabled or request.method not in ("GET", "HEAD"):
        return None
    prefix = urlsplit(pub.config.site.base_url).path or "/"
    path = request.url.path
    if not path.startswith(prefix):
        return None
    relative = path[len(prefix) :]
    if relative == "" or relative.endswith("/"):
        return _file(pub.site_dir, relative + "index.html", request)
    served = _file(pub.site_dir, relative, request)
    if served is None and _file(pub.site_dir, relative + "/index.html", request) is not None:
        return Response(status_code=307, headers={"Location": quote(path + "/")})
    return served


def _file(folder: Path, relative: str, request: Request) -> Response | None:
    """``relative`` below ``folder`` with HTTP caching, or None when there is no such
    (visible, regular) file there."""
    root = folder.resolve()
    try:  # a NUL byte or an over-long name is a ValueError / OSError, not a server error
        target = (root / relative).resolve()
        hidden = any(part.startswith(".") for part in target.relative_to(root).parts)
        if root not in target.parents or not target.is_file() or hidden:
            raise FileNotFoundError(target)
        stat = target.stat()
    except (OSError, ValueError):
        return None
    # From size and mtime, not the bytes: a 304 then costs a stat, not a read. The build
    # leaves an unchanged feed file untouched, so its tag stays the same.
    etag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
    modified = datetime.fromtimestamp(int(stat.st_mtime), UTC)
    headers = {
        "ETag": etag,
        "Last-Modified": format_datetime(modified, usegmt=True),
        "Cache-Control": "public, max-age=300",
    }
    if _not_modified(request, etag, modified):
        return Response(status_code=304, headers=headers)
    media = FEED_TYPES.get(target.name) or SUFFIX_TYPES.get(target.suffix) or _guess(target.name)
    # Streamed from the file (a large feed is not read into memory), with HEAD and byte
    # ranges; our ETag and Last-Modified stand in for Starlette's own.
    return FileResponse(
        target, media_type=media or "application/octet-stream", headers=headers, stat_result=stat
    )


def _guess(name: str) -> str | None:
    kind = mimetypes.guess_type(name)[0]
    return f"{kind}; charset=utf-8" if kind in ("text/html", "text/css", "text/plain") else kind


def _not_modified(request: Request, etag: str, modified: datetime) -> bool:
    match = request.headers.get("if-none-match")
    if match is not None:
        return etag in [tag.strip() for tag in match.split(",")] or match.strip() == "*"
    since = request.headers.get("if-modified-since")
    if since:
        try:
            return modified <= parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
    return False


async def _error(request: Request, exc: Exception) -> Response:
    # Logged by the server; the visitor sees a plain page, never a traceback. It needs no
    # template: the error may be in one.
    return fallback("Something went wrong", "Please try again later.", 500)
