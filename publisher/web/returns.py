"""The ESPs' webhooks: POST /returns/ses, /returns/postmark, /returns/mailgun.

Each answers 403 and changes nothing unless the request is shown to come from the ESP
(``returns.esp``), 404 where schedule.yaml does not configure it, and 200 once the state
changed (or had changed already: an ESP that repeats a report is answered the same).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from publisher.config import Publication
from publisher.returns import esp
from publisher.returns.act import Report, act
from publisher.tokens import Signer

MAX_BODY = 256 * 1024  # an ESP's report is a few KB
CERTIFICATE_BYTES = 64 * 1024


def routes(pub: Publication, signer: Signer, engine: Engine) -> list[Route]:
    settings = pub.config.returns
    prefix = "" if settings is None else settings.address.rsplit("@", 1)[0]
    hooks = None if settings is None else settings.webhooks
    certificates = Certificates(pub.state_dir / "sns-certificates")

    async def ses(request: Request) -> Response:
        if hooks is None or not hooks.ses_topics:
            return _answer(404, "not configured")
        try:
            body = await _body(request)
            message = await run_in_threadpool(esp.sns_verified, body, hooks.ses_topics,
                                              certificates.get)  # fmt: skip
        except esp.Forged as exc:
            return _answer(403, str(exc))
        if message["Type"] != "Notification":
            # Confirm the subscription (or its end): SNS sends nothing until this GET.
            ok = await run_in_threadpool(_confirm, str(message["SubscribeURL"]))
            return _answer(200 if ok else 502, "confirmed" if ok else "cannot confirm")
        return await _apply(esp.ses_reports(message, prefix))

    async def postmark(request: Request) -> Response:
        credentials = _secret(None if hooks is None else hooks.postmark_auth_env)
        if credentials is None:
            return _answer(404, "not configured")
        try:
            esp.postmark_verified(request.headers.get("authorization"), credentials)
            reports = esp.postmark_reports(await _body(request))
        except esp.Forged as exc:
            return _answer(403, str(exc))
        return await _apply(reports)

    async def mailgun(request: Request) -> Response:
        key = _secret(None if hooks is None else hooks.mailgun_key_env)
        if key is None:
            return _answer(404, "not configured")
        try:
            event = esp.mailgun_verified(await _body(request), key, time.time())
        except esp.Forged as exc:
            return _answer(403, str(exc))
        return await _apply(esp.mailgun_reports(event, prefix))

    async def _apply(reports: list[Report]) -> Response:
        acted = await run_in_threadpool(_act_all, reports)
        return JSONResponse({"reports": len(reports), "acted": acted})

    def _act_all(reports: list[Report]) -> int:
        acted = 0
        for report in reports:
            try:
                with engine.begin() as db:
                    acted += act(db, pub, signer, report, time.time()).acted
            except IntegrityError:
                pass  # the same report, acted on by another request at this moment
        return acted

    return [
        Route("/returns/ses", ses, methods=["POST"]),
        Route("/returns/postmark", postmark, methods=["POST"]),
        Route("/returns/mailgun", mailgun, methods=["POST"]),
    ]


class Certificates:
    """Amazon SNS's signing certificates, fetched once per URL (checked by the caller)
    and kept in the state folder: a restart does not fetch them again."""

    def __init__(self, folder: Path, fetch: Callable[[str], bytes] | None = None) -> None:
        self.folder = folder
        self.fetch = fetch or _download
        self.known: dict[str, bytes] = {}

    def get(self, url: str) -> bytes:
        if url in self.known:
            return self.known[url]
        path = self.folder / f"{hashlib.sha256(url.encode()).hexdigest()}.pem"
        try:
            pem = path.read_bytes()
        except OSError:
            pem = self.fetch(url)
            self.folder.mkdir(parents=True, exist_ok=True)
            part = path.with_suffix(".part")
            part.write_bytes(pem)
            os.replace(part, path)
        self.known[url] = pem
        return pem


def _download(url: str) -> bytes:
    import urllib3

    try:
        answer = urllib3.request("GET", url, timeout=10.0, retries=False, preload_content=False)
        pem = answer.read(CERTIFICATE_BYTES + 1)
        answer.release_conn()
    except urllib3.exceptions.HTTPError as exc:
        raise esp.Forged(f"cannot fetch the signing certificate: {exc}") from exc
    if answer.status != 200 or len(pem) > CERTIFICATE_BYTES:
        raise esp.Forged(f"cannot fetch the signing certificate (HTTP {answer.status})")
    return bytes(pem)


def _confirm(url: str) -> bool:
    import urllib3

    try:
        answer = urllib3.request("GET", url, timeout=10.0, retries=False)
    except urllib3.exceptions.HTTPError:
        return False
    return answer.status == 200


def _secret(variable: str | None) -> str | None:
    return None if variable is None else (os.environ.get(variable) or None)


async def _body(request: Request) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise esp.Forged("too large for a report")
    return body


def _answer(status: int, what: str) -> Response:
    return JSONResponse({"error" if status >= 400 else "result": what}, status_code=status)
