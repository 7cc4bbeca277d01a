"""The backend interface: open, close, context manager, send."""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Literal

from pydantic import BaseModel

from publisher.errors import Problem, PublisherError


@dataclass(frozen=True, slots=True)
class Envelope:
    """Who a message is from and to, as the transport sees it (SMTP MAIL FROM / RCPT TO)."""

    sender: str
    recipient: str
    message_id: str


class Message:
    """A finished message in pieces (RFC 5322 bytes with CRLF line ends, split where its
    per-recipient parts begin and end), and, when it was prepared so, the same pieces as
    SMTP DATA sends them (``stuffed``: leading dots doubled, RFC 5321 §4.5.2, and the
    terminating dot). An issue's messages are made of pieces it prepared once, so a
    backend that writes the pieces as they are does no per-message copying or scanning."""

    __slots__ = ("pieces", "stuffed")

    def __init__(self, pieces: Sequence[bytes], stuffed: Sequence[bytes] | None = None) -> None:
        self.pieces = pieces
        self.stuffed = stuffed

    def __bytes__(self) -> bytes:
        return b"".join(self.pieces)

    def transparent(self) -> Sequence[bytes]:
        """The DATA payload up to and with the terminating dot."""
        if self.stuffed is None:
            self.stuffed = (transparent(bytes(self)),)
        return self.stuffed


def stuff(piece: bytes, line_start: bool) -> bytes:
    """``piece`` with the dots that begin its lines doubled; ``line_start``: whether the
    piece itself begins a line."""
    if b"." not in piece:
        return piece
    if line_start and piece.startswith(b"."):
        piece = b"." + piece
    return piece.replace(b"\r\n.", b"\r\n..")


def transparent(message: bytes) -> bytes:
    """A whole message as DATA sends it: CRLF line ends, leading dots doubled, the
    terminating dot. Messages that are clean CRLF already (ours are) take the fast path."""
    crlf = message.count(b"\r\n")
    if message.count(b"\n") != crlf or message.count(b"\r") != crlf:
        message = re.sub(rb"\r\n|\r|\n", b"\r\n", message)
    message = stuff(message, True)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message + b".\r\n"


# What a backend's send_many asks for the next message: (message, envelope), or None.
Take = Callable[[bool], "tuple[Message, Envelope] | None"]


# Where in a delivery a reply came (RFC 5321's steps), which says whose fault it is:
# "connect" (no session: refused, TLS, AUTH, the greeting), "mail" (MAIL FROM: the sender),
# "rcpt" (RCPT TO: this recipient), "data" (the DATA command), "dot" (the reply to the
# message itself, after the final dot), "local" (a backend without a server: a file).
Stage = Literal["connect", "mail", "rcpt", "data", "dot", "local"]


class DeliveryError(PublisherError, OSError):
    """A message was not accepted. ``permanent``: retrying cannot help (an SMTP 5xx);
    otherwise it may (4xx, a dropped connection). ``code`` and ``reply`` carry what the
    server said, for the ledger and the operator; ``stage`` where it said it."""

    def __init__(
        self,
        what: str,
        permanent: bool,
        code: int | None = None,
        reply: str = "",
        connection: bool = False,
        stage: Stage = "rcpt",
    ) -> None:
        self.permanent = permanent
        self.code = code
        self.reply = reply
        # True when the session was lost or never made (refused, TLS, AUTH, 421, a reset):
        # the backend holds no connection any more.
        self.connection = connection
        self.stage: Stage = stage
        kind = "permanent" if permanent else "transient"
        detail = f"{code} {reply}".strip() if code else reply
        super().__init__(
            [Problem("", None, f"delivery ({kind})", f"{what}: {detail}" if detail else what)]
        )


class Backend:
    """Base class of every backend. Subclasses implement ``send`` and, when they hold a
    connection or a file, ``open`` and ``close``. ``options`` are the keys of the
    ``backend:`` section of schedule.yaml other than ``type``."""

    # A pydantic model of the options, which `publisher check` (and every command that
    # sends) validates with their lines in schedule.yaml before the backend is made; None
    # takes them as they are (a third party's backend may check them itself).
    Options: ClassVar[type[BaseModel] | None] = None

    def __init__(self, options: Mapping[str, Any], root: str) -> None:
        self.options = dict(options)
        self.root = root  # the publication folder: relative paths in options start here

    def open(self) -> None:
        """Connect / prepare. Calling it again on an open backend does nothing."""

    def close(self) -> None:
        """Release what ``open`` took. Calling it on a closed backend does nothing."""

    def send(self, message: bytes, envelope: Envelope) -> str:
        """Hand one finished message over; return the provider's id for it."""
        raise NotImplementedError

    def send_message(self, message: Message, envelope: Envelope) -> str:
        """One message: ``send`` of its bytes, unless a backend can use the pieces as they
        are (SMTP writes them to the socket)."""
        return self.send(bytes(message), envelope)

    def send_many(self, take: Take) -> Generator[str | DeliveryError, None, None]:
        """What the delivery loop calls: the messages ``take`` hands out, sent in order,
        one result each (the provider's id, or the DeliveryError), in the same order.

        ``take(True)`` waits for the next message and returns None when there is none
        left; ``take(False)`` returns one only if it is ready now (a pipelining backend
        asks it for the message to announce while the last is still going out). The
        delivery loop may stop reading results at any point (the generator is closed):
        what was taken and has no result yet was not sent. This default sends one
        message at a time."""
        for _ in range(1 << 62):  # bounded by what ``take`` hands out
            item = take(True)
            if item is None:
                return
            try:
                self.open()
                yield self.send_message(*item)
            except DeliveryError as exc:
                yield exc

    def __enter__(self) -> Backend:
        try:
            self.open()
        except BaseException:
            self.close()  # whatever open() took before it failed is given back
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
