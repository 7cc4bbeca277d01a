"""Double opt-in: the form, the confirmation mail, the confirmation.

The answer to a sign-up is the same whether the address is new, pending or subscribed
already, so the form reveals nothing; a second sign-up within an hour sends no second mail.
The form carries a CSRF token (double submit: a cookie and a signed field that must match),
and each client address may sign up a few times per ten minutes.
"""

from __future__ import annotations

import html
import secrets
import time
from collections import defaultdict, deque
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
from publisher.web.pages import page

CSRF = "csrf"  # the token purpose of the form's field
LIMIT, PER_SECONDS = 5, 600


class RateLimit:
    """At most LIMIT requests per PER_SECONDS per client address (in this process)."""

    def __init__(self) -> None:
        self.seen: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        recent = self.seen[client]
        while recent and recent[0] < now - PER_SECONDS:
            recent.popleft()
        if len(recent) >= LIMIT:
            return False
        recent.append(now)
        return True


def lists_of(pub: Publication) -> list[str]:
    return sorted({d.list_name for d in pub.config.digests})


def form_page(pub: Publication, signer: Signer, request: Request) -> Response:
    nonce = secrets.token_urlsafe(16)
    options = "".join(
        f'<label><input type="checkbox" name="list" value="{html.escape(n)}" checked> '
        f"{html.escape(n)}</label><br>"
        for n in lists_of(pub)
    )
    body = (
        f'<form method="post" action="/subscribe">'
        f'<input type="hidden" name="csrf" value="{signer.sign(CSRF, nonce)}">'
        '<p><label for="email">Email address</label><br>'
        '<input id="email" name="email" type="email" required autocomplete="email"></p>'
        '<p><label for="name">Name (optional)</label><br>'
        '<input id="name" name="name" type="text" autocomplete="name"></p>'
        f"<fieldset><legend>Lists</legend>{options}</fieldset>"
        '<p><button type="submit">Subscribe</button></p></form>'
    )
    response = page(f"Subscribe to {pub.config.site.title}", body)
    response.set_cookie("csrf", nonce, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/subscribe")  # fmt: skip
    return response


async def subscribe(
    pub: Publication, signer: Signer, engine: Engine, limits: RateLimit, request: Request
) -> Response:
    client = request.client.host if request.client else "unknown"
    form = await request.form()
    nonce = request.cookies.get("csrf", "")
    if not nonce or signer.verify(CSRF, str(form.get("csrf", ""))) != nonce:
        return page(
            "Please try again", "<p>The form had expired. Reload it and send it again.</p>", 400
        )
    if not limits.allow(client):
        return page("Too many requests", "<p>Please wait a few minutes and try again.</p>", 429)
    wanted = [n for n in form.getlist("list") if n in lists_of(pub)] or lists_of(pub)
    done = page(
        "Check your inbox",
        "<p>If the address can receive mail, a message with a confirmation link is on its "
        "way. Nothing happens until you confirm.</p>",
    )
    try:
        address = normalize_address(str(form.get("email", "")))
    except ValueError as exc:
        return page("Check the address", f"<p>{html.escape(str(exc))}</p>", 400)
    name = clean_text(str(form.get("name", "")), 200)
    now = time.time()
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


async def confirm(pub: Publication, signer: Signer, engine: Engine, request: Request) -> Response:
    public_id = signer.verify(confirmation.CONFIRM, request.path_params["token"])
    if public_id is None:
        return page("This link is not valid", "<p>Nothing was changed.</p>", 400)
    if request.method == "GET":
        body = ('<p>Confirm your subscription?</p><form method="post">'
                '<button type="submit">Confirm</button></form>')  # fmt: skip
        return page("Confirm", body)
    with engine.begin() as db:
        store.confirm_subscription(db, public_id, time.time())
    return page("Subscribed", "<p>Thank you: you are subscribed.</p>")
