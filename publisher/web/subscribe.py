"""Double opt-in: the form, the confirmation mail, the confirmation.

The answer to a sign-up is the same whether the address is new, pending or subscribed
already, so the form reveals nothing; a second sign-up within an hour sends no second mail.
The form carries a CSRF token (double submit: a cookie and a signed field that must match),
and each client address may sign up a few times per ten minutes.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from publisher import confirm as confirmation
from publisher import store
from publisher.backends import backend_pool
from publisher.config import Publication
from publisher.delivery import Plan, Sender
from publisher.headers import clean_text
from publisher.subscribers import normalize_address, normalize_zone, zone_choices
from publisher.tokens import Signer
from publisher.web.limits import PER_SECONDS, SharedRateLimit, client_key
from publisher.web.pages import Pages

CSRF = "csrf"  # the token purpose of the form's field
ANSWER_FLOOR = 0.1  # seconds every sign-up answer takes at least (see subscribe)
FORM_LIFETIME = 2 * 3600  # seconds a sign-up form stays valid after it was shown


def lists_of(pub: Publication) -> list[str]:
    return sorted({d.list_name for d in pub.config.digests})


def form_page(pub: Publication, pages: Pages, signer: Signer, request: Request) -> Response:
    nonce = secrets.token_urlsafe(16)
    # Bound to the moment it was shown: a form (and its cookie) captured once cannot be
    # replayed for ever.
    csrf = signer.sign(CSRF, nonce, issued=int(time.time()))
    response = pages.render("subscribe.html", f"Subscribe to {pub.config.site.title}",
                            csrf=csrf, lists=lists_of(pub), zones=zone_choices())  # fmt: skip
    response.set_cookie("csrf", nonce, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/subscribe")  # fmt: skip
    return response


async def subscribe(
    pub: Publication,
    pages: Pages,
    signer: Signer,
    engine: Engine,
    limits: SharedRateLimit,
    request: Request,
) -> Response:
    started = time.monotonic()
    client = client_key(request)
    form = await request.form()
    nonce = request.cookies.get("csrf", "")
    given = str(form.get("csrf", ""))
    if not nonce or signer.verify(CSRF, given, time.time(), FORM_LIFETIME) != nonce:
        expired = "The form had expired. Reload it and send it again."
        return pages.message("Please try again", expired, status=400)
    if not await run_in_threadpool(limits.allow, client):
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
    given = str(form.get("timezone", "")).strip()
    try:
        zone = normalize_zone(given) if given else None
    except ValueError as exc:
        what = f"{exc}. Choose one from the list, or leave the field empty."
        return pages.message("Check the time zone", what, status=400)
    now = time.time()
    if not pub.config.web.double_opt_in:
        await run_in_threadpool(_subscribe_now, engine, address, name, wanted, now, zone)
        return pages.message("Subscribed", "Thank you: the next issue will reach this address.")
    plan, subscriber_id, send = await run_in_threadpool(
        _request, engine, address, name, wanted, now, zone
    )
    if send:
        # After the answer has gone out, in the thread pool: the backend may take a while,
        # and a visitor who waited for it would learn that the address was new (331 ms
        # against 2 ms with a slow mail server). A refusal or a lost connection is
        # recorded in the ledger and retried by `publisher run`.
        done.background = BackgroundTask(_send_now, pub, signer, engine, plan, subscriber_id, now)
    # A new address still costs a few more database writes than a known one (3-6 ms
    # measured): every answer waits for the same floor, so the time tells nothing.
    await asyncio.sleep(max(0.0, ANSWER_FLOOR - (time.monotonic() - started)))
    return done


def _subscribe_now(
    engine: Engine, address: str, name: str, wanted: list[str], now: float, zone: str | None
) -> None:
    with engine.begin() as db:
        for list_name in wanted:
            # The person's own request: it may take back an earlier unsubscribe.
            store.add_subscriber(db, address, name, list_name, now, resubscribe=True,
                                 timezone=zone)  # fmt: skip


def _request(
    engine: Engine, address: str, name: str, wanted: list[str], now: float, zone: str | None
) -> tuple[Plan, int, bool]:
    plan = confirmation.hour_issue(engine, now)
    with engine.begin() as db:  # the request and its mail's ledger row, together
        subscriber_id, send = store.request_subscription(db, address, name, wanted, now, zone)
        if send:
            confirmation.queue_row(db, plan, subscriber_id, now)
    return plan, subscriber_id, send


def _send_now(
    pub: Publication, signer: Signer, engine: Engine, plan: Plan, subscriber_id: int, now: float
) -> None:
    when = datetime.fromtimestamp(now, UTC)
    sender = Sender(engine, pub, backend_pool(pub)[:1])
    confirmation.send(sender, signer, plan, subscriber_id, when)


async def confirm(
    pub: Publication, pages: Pages, signer: Signer, engine: Engine, request: Request
) -> Response:
    within = pub.config.web.confirm_within
    public_id = signer.verify(confirmation.CONFIRM, request.path_params["token"], time.time(),
                              within)  # fmt: skip
    if public_id is None:
        return pages.message("This link is not valid",
                             "The link may be incomplete, altered or older than "
                             f"{within // 86400 or 1} day(s). Nothing was changed: sign up "
                             "again to get a new one.", status=400)  # fmt: skip
    if request.method == "GET":
        # A button, not the confirmation itself: mail scanners follow links.
        return pages.render("confirm.html", "Confirm your subscription")
    await run_in_threadpool(_confirm, engine, public_id, time.time())
    return pages.message("Subscribed", "Thank you: you are subscribed.")


def _confirm(engine: Engine, public_id: str, now: float) -> None:
    with engine.begin() as db:
        store.confirm_subscription(db, public_id, now)
