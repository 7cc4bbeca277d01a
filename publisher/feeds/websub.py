"""Telling WebSub hubs that feeds changed (the publisher's side of W3C WebSub, §7).

After a build that changed feeds, each configured hub gets one ``hub.mode=publish`` POST
naming every changed feed (``hub.url``, repeated; the form hubs such as Google's and
Superfeedr's accept), so that the hub fetches them and tells its subscribers within
seconds. The feeds are written first: a hub that is slow, down or refusing costs a
bounded wait and a warning with its answer, never the build.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from publisher import __version__

ATTEMPTS = 3  # per hub: a refused connection or a 5xx is tried again, twice
TIMEOUT = 5.0  # seconds a hub may take to answer one attempt
BACKOFF = (1.0, 2.0)  # seconds between attempts


@dataclass(frozen=True)
class Ping:
    hub: str
    ok: bool
    answer: str  # the hub's status line, or why it could not be reached
    attempts: int


def publish(
    hubs: Sequence[str],
    topics: Sequence[str],
    sleep: Callable[[float], None],
    timeout: float = TIMEOUT,
) -> list[Ping]:
    """Tell every hub that ``topics`` (feed URLs) changed; what each answered."""
    if not topics:
        return []
    body = urllib.parse.urlencode(
        [("hub.mode", "publish"), *(("hub.url", topic) for topic in topics)]
    ).encode()
    return [_ping(hub, body, sleep, timeout) for hub in hubs]


def _ping(hub: str, body: bytes, sleep: Callable[[float], None], timeout: float) -> Ping:
    answer = ""
    for attempt in range(1, ATTEMPTS + 1):
        request = urllib.request.Request(
            hub,
            data=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "User-Agent": f"publisher/{__version__} (WebSub publisher)",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                # 2xx: accepted (WebSub hubs answer 202 or 204).
                return Ping(hub, True, f"{response.status} {response.reason}", attempt)
        except urllib.error.HTTPError as exc:
            answer = f"{exc.code} {exc.reason}: {_text(exc.read())}".rstrip(": ")
            if exc.code < 500:
                return Ping(hub, False, answer, attempt)  # the hub refuses: no retry helps
        except (OSError, ValueError) as exc:
            answer = f"cannot reach it: {getattr(exc, 'reason', exc)}"
        if attempt < ATTEMPTS:
            sleep(BACKOFF[attempt - 1])
    return Ping(hub, False, answer, ATTEMPTS)


def _text(data: bytes) -> str:
    """The start of a hub's answer, on one line."""
    return " ".join(data[:300].decode("utf-8", "replace").split())
