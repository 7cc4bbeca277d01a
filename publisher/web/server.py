"""The HTTP server around the app: uvicorn, with limits a public address needs.

uvicorn closes an idle keep-alive connection after a few seconds, but it waits for ever for
the first request of a new connection, and for a request head or body that arrives one
byte at a time: 800 silent connections were all still open after 12 s. Here every request
must arrive whole within ``web.request_timeout``, the number of connections is capped, and
the access log never shows a token (a logged unsubscribe or confirmation link works for
whoever reads the log).
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from typing import Any

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from publisher.config import WebSettings
from publisher.errors import Problem, PublisherError

KEEP_ALIVE = 5  # seconds an idle connection stays open between requests
# Paths whose last part is a signed token.
_TOKEN_PATH = re.compile(r"^(/(?:unsubscribe|confirm|preferences)/)[^/?\s]+")


class BoundedProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for every request to arrive whole."""

    request_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE and self.conn.their_state is not h11.SEND_BODY:
            self._disarm()  # the whole request is in: the app may take its time to answer

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start a pipelined request already received
        waiting = self.conn.their_state is h11.IDLE or self.conn.their_state is h11.SEND_BODY
        if waiting and not self.transport.is_closing():
            self._arm()  # the next request on this connection has the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.request_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        # No whole request within the deadline: silent, or a head or body trickling in.
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


class RedactTokens(logging.Filter):
    """Replaces the token in access-log lines of token links with ``…``."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact(args[2]), *args[3:])
        return True


def redact(path: str) -> str:
    return _TOKEN_PATH.sub(r"\1…", path)


def log_config() -> dict[str, Any]:
    """uvicorn's own logging set-up, with tokens taken out of the access log."""
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactTokens}},
        "formatters": {
            "default": {
                "()": "uvicorn.logging.DefaultFormatter",
                "fmt": "%(levelprefix)s %(message)s",
            },
            "access": {
                "()": "uvicorn.logging.AccessFormatter",
                "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
            },
        },
        "handlers": {
            "default": {
                "formatter": "default",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
            },
            "access": {
                "formatter": "access",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            # On the logger, not a handler: no handler anyone adds sees a token either.
            "uvicorn.access": {
                "handlers": ["access"],
                "level": "INFO",
                "propagate": False,
                "filters": ["redact"],
            },
        },
    }
    return config


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, opened before the server starts: a port in use or an address
    not of this machine is one line for the operator (uvicorn logged a traceback, or an
    error and an exit status of its own)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as exc:
        raise PublisherError(
            [Problem("serve", None, "--host", f"cannot listen on {host!r}: {_reason(exc)}")]
        ) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise PublisherError(
            [Problem("serve", None, "--port", f"cannot listen on {host}:{port}: {_reason(exc)}")]
        ) from None
    sock.set_inheritable(True)
    return sock


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)


def server_config(
    app: ASGIApp, host: str, port: int, web: WebSettings, log_level: str = "info"
) -> uvicorn.Config:
    protocol = type("Protocol", (BoundedProtocol,), {"request_timeout": float(web.request_timeout)})
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        timeout_keep_alive=KEEP_ALIVE,
        limit_concurrency=web.max_connections,
        h11_max_incomplete_event_size=16 * 1024,  # a request head larger than 16 KB: 400
        log_config=log_config(),
        log_level=log_level,
        server_header=False,
        # X-Forwarded-For/-Proto from a proxy on this machine only (see docs/web.md).
        forwarded_allow_ips="127.0.0.1",
    )
