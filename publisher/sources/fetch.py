"""One HTTP fetch of a feed, as a good citizen: a conditional GET (a 304 costs nothing),
gzip, a User-Agent naming the product and the site, a timeout for the whole answer and a
limit on its size, a few redirects at most (permanent ones reported, so the stored URL
follows), and the server's Retry-After. urllib3 does the HTTP; this module decides.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError

from publisher import __version__

MAX_BYTES = 10 * 1024 * 1024  # a feed larger than this (after gunzip) is refused
TIMEOUT = 20.0  # seconds for the whole exchange, body included
MAX_REDIRECTS = 5
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.1"
)
_REDIRECTS = {301, 302, 303, 307, 308}
_ERRNO = re.compile(r"^\[Errno -?\d+\] ")
_PERMANENT = {301, 308}


@dataclass(frozen=True)
class Answer:
    """What a fetch came to. ``status`` is None when no HTTP answer came (DNS, refused,
    TLS, timeout); ``error`` says what went wrong, None for a 200 or a 304."""

    status: int | None
    url: str  # where the answer came from, after redirects
    moved: str | None = None  # every redirect was permanent: the feed's new address
    body: bytes | None = None  # a 200's body
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None
    retry_after: float | None = None  # seconds the server asked us to wait
    error: str | None = None


def user_agent(site_url: str) -> str:
    return f"publisher/{__version__} (+{site_url})"


def fetch(
    pool: urllib3.PoolManager,
    url: str,
    agent: str,
    etag: str | None = None,
    last_modified: str | None = None,
    timeout: float = TIMEOUT,
    limit: int = MAX_BYTES,
    redirects: int = MAX_REDIRECTS,
) -> Answer:
    """GET ``url`` (following at most ``redirects`` redirects); never raises for what the
    network or the server does: that is the answer's ``error``."""
    headers = {"User-Agent": agent, "Accept": ACCEPT, "Accept-Encoding": "gzip, deflate"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    deadline = time.monotonic() + timeout
    current, permanent = url, True
    for _ in range(redirects + 1):  # bounded: one request a turn
        left = deadline - time.monotonic()
        if left <= 0:
            return Answer(None, current, error=f"no answer within {timeout:g} s")
        try:
            response = pool.request(
                "GET", current, headers=headers, redirect=False, retries=False,
                preload_content=False, decode_content=True,
                timeout=urllib3.Timeout(connect=left, read=left),
            )  # fmt: skip
        except HTTPError as exc:
            return Answer(None, current, error=_network_error(exc, timeout))
        complete = False  # the answer read to its end: its connection can be used again
        try:
            status = response.status
            if status in _REDIRECTS:
                location = response.headers.get("Location")
                if not location:
                    return Answer(status, current, error=f"HTTP {status} without a Location")
                target = urljoin(current, location)
                if urlsplit(target).scheme not in ("http", "https"):
                    return Answer(status, current, error=f"HTTP {status} to {target!r}")
                permanent = permanent and status in _PERMANENT
                current = target
                continue
            moved = current if permanent and current != url else None
            answer = Answer(
                status, current, moved,
                content_type=response.headers.get("Content-Type", ""),
                etag=response.headers.get("ETag"),
                last_modified=response.headers.get("Last-Modified"),
                retry_after=_retry_after(
                    response.headers.get("Retry-After"), response.headers.get("Date")
                ),
            )  # fmt: skip
            if status == 304:
                complete = True
                return answer
            if status != 200:
                return replace(answer, error=f"HTTP {status} {response.reason or ''}".strip())
            body = _read(response, limit, deadline)
            if body is None:
                return replace(answer, error=f"the feed is larger than {limit:,} bytes")
            complete = True
            return replace(answer, body=body)
        except HTTPError as exc:  # while reading the body (a timeout, a broken gzip)
            return Answer(None, current, error=_network_error(exc, timeout))
        except TimeoutError:
            return Answer(None, current, error=f"no answer within {timeout:g} s")
        finally:
            if complete:
                response.release_conn()
            else:  # a body left unread (an error page, a redirect, one too large): not reused
                response.close()
    return Answer(None, current, error=f"more than {redirects} redirects")


def _read(response: urllib3.BaseHTTPResponse, limit: int, deadline: float) -> bytes | None:
    """The body, or None past ``limit`` bytes (as decompressed: a gzip bomb stops too);
    TimeoutError past ``deadline`` (a server that trickles its answer forever)."""
    chunks: list[bytes] = []
    size = 0
    while True:  # bounded: by the limit, and by the deadline
        chunk = response.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if time.monotonic() > deadline:
            raise TimeoutError


def _retry_after(value: str | None, date: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date, counted from the answer's own
    Date (the server's clock and ours need not agree; without a Date it is not used)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when, sent = parsedate_to_datetime(value), parsedate_to_datetime(date or "")
        return max(0.0, (when - sent).total_seconds())
    except (TypeError, ValueError):
        return None


def _network_error(exc: HTTPError, timeout: float) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    if "timed out" in text.lower():
        return f"no answer within {timeout:g} s"
    if isinstance(reason, NewConnectionError):
        # "HTTPConnection(host=..., port=...): Failed to establish a new connection: [Errno
        # 111] Connection refused": the reason, without what the operator wrote already.
        what = _ERRNO.sub("", text.rpartition(": ")[2] if ": " in text else text)
        return f"cannot connect: {what}"
    return text.splitlines()[0][:300] if text else type(exc).__name__
