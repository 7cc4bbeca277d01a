"""Double opt-in: the form, the confirmation mail, the confirmation.

The answer to a sign-up is the same whether the address is new, pending or subscribed
already, so the form reveals nothing; a second sign-up within an hour sends no second mail.
The form carries a CSRF token (double submit: a cookie and a signed field that must match),
and each client address may sign up a few times per ten minutes.
"""

from __future__ import annotations

import secrets
import time
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from publisher import confirm as confirmation
from publisher import store
from publisher.backends import load_backend
from publisher.config import Publication
from publisher.delivery import Plan
from publisher.headers import clean_text
from publisher.subscribers import normalize_address
from publisher.tokens import Signer
from publisher.web.pages import Pages

CSRF = "csrf"  # the token purpose of the form's field
LIMIT, PER_SECONDS = 5, 600
MAX_CLIENTS = 10_000  # client addresses remembered before the stale ones are forgotten


class RateLimit:
    """At most LIMIT requests per PER_SECONDS per client address (in this process)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.seen: dict[str, deque[float]] = defaultdict(deque)
        self.clock = clock

    def allow(self, client: str) -> bool:
        now = self.clock()
        if len(self.seen) > MAX_CLIENTS:  # bounded memory under a flood from many addresses
            stale = [
                c for c, times in self.seen.items() if not times or times[-1] < now - PER_SECONDS
            ]
            for gone in stale:
                del self.seen[gone]
        recent = self.seen[client]
        while recent and recent[0] < now - PER_SECONDS:
            recent.popleft()
        if len(recent) >= LIMIT:
            return False
        recent.append(now)
        return True


def lists_of(pub: Publication) -> list[str]:
    return sorted({d.list_name for d in pub.config.digests})


def form_page(pub: Publication, pages: Pages, signer: Signer, request: Request) -> Response:
    nonce = secrets.token_urlsafe(16)
    response = pages.render("subscribe.html", f"Subscribe to {pub.config.site.title}",
                            csrf=signer.sign(CSRF, nonce), lists=lists_of(pub))  # fmt: skip
    response.set_cookie("csrf", nonce, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/subscribe")  # fmt: skip
    return response


async def subscribe(
    pub: Publication,
    pages: Pages,
    signer: Signer,
    engine: Engine,
    limits: RateLimit,
    request: Request,
) -> Response:
    client = request.client.host if request.client else "unknown"
    form = await request.form()
    nonce = request.cookies.get("csrf", "")
    if not nonce or signer.verify(CSRF, str(form.get("csrf", ""))) != nonce:
        expired = "The form had expired. Reload it and send it again."
        return pages.message("Please try again", expired, status=400)
    if not limits.allow(client):
        response = pages.message("Too many requests", "Please wait a few minutes and try again.",
                                 status=429)  # fmt: skip
        response.headers["Retry-After"] = str(PER_SECONDS)
        return response
    wanted = [n for n in form.getlist("list") if n in lists_of(pub)] or lists_of(pub)
    done = pages.message(
        "Check your inbox",
        "If the address can receive mail, a message with a confirmation link is on its way.",
        "Nothing happens until you confirm.",
    )
    try:
        address = normalize_address(str(form.get("email", "")))
    except ValueError as exc:
        return pages.message("Check the address", str(exc), status=400)
    name = clean_text(str(form.get("name", "")), 200)
    now = time.time()
    if not pub.config.web.double_opt_in:
        with engine.begin() as db:
            for list_name in wanted:
                store.add_subscriber(db, address, name, list_name, now)
        return pages.message("Subscribed", "Thank you: the next issue will reach this address.")
    plan = confirmation.hour_issue(engine, now)
    with engine.begin() as db:  # the request and its mail's ledger row, together
        subscriber_id, send = store.request_subscription(db, address, name, wanted, now)
        if send:
            confirmation.queue_row(db, plan, subscriber_id, now)
    if send:
        # Off the event loop: the backend may take a while. A refusal or a lost
        # connection is recorded in the ledger and retried by `publisher run`; the
        # visitor's answer is the same either way.
        await run_in_threadpool(_send_now, pub, signer, engine, plan, subscriber_id, now)
    return done


def _send_now(
    pub: Publication, signer: Signer, engine: Engine, plan: Plan, subscriber_id: int, now: float
) -> None:
    settings = pub.config.backend
    backend = load_backend(settings.type, settings.options, str(pub.root))
    when = datetime.fromtimestamp(now, UTC)
    confirmation.send(engine, pub, signer, plan, subscriber_id, when, [backend])


async def confirm(pages: Pages, signer: Signer, engine: Engine, request: Request) -> Response:
    public_id = signer.verify(confirmation.CONFIRM, request.path_params["token"])
    if public_id is None:
        return pages.message("This link is not valid",
                             "The link may be incomplete or altered. Nothing was changed.",
                             status=400)  # fmt: skip
    if request.method == "GET":
        # A button, not the confirmation itself: mail scanners follow links.
        return pages.render("confirm.html", "Confirm your subscription")
    with engine.begin() as db:
        store.confirm_subscription(db, public_id, time.time())
    return pages.message("Subscribed", "Thank you: you are subscribed.")
