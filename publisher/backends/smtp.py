"""SMTP delivery: a persistent connection, TLS verified, AUTH from the environment.

Options (the ``backend:`` section of schedule.yaml):
  host, port (default 587 with starttls, 465 with implicit TLS, 25 without),
  tls: starttls | implicit | none (default starttls), ca_file (for a private CA),
  username, password_env (the variable holding the password), timeout (seconds, 30),
  max_per_connection (messages before a fresh connection, 100), connections (how many
  run in parallel; the delivery loop opens that many backends).

One backend holds one connection. It reconnects on the next message after a 421 or a
dropped connection, and after ``max_per_connection`` messages (some servers degrade on
long sessions). Replies map to DeliveryError: 5xx permanent, 4xx transient; faults of the
connection itself are marked ``connection=True``.
"""

from __future__ import annotations

import os
import smtplib
import socket
import ssl
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import Field

from publisher.backends.base import Backend, DeliveryError, Envelope, Message, Stage, Take
from publisher.config.fields import Int, StrictModel, Text


class SmtpOptions(StrictModel):
    host: Text
    port: Int | None = Field(default=None, ge=1, le=65535)
    tls: Literal["starttls", "implicit", "none"] = "starttls"
    ca_file: Text | None = None
    username: Text | None = None
    password_env: Text | None = None
    timeout: float = Field(default=30.0, gt=0)
    max_per_connection: Int = Field(default=100, ge=1)
    connections: Int = Field(default=1, ge=1, le=64)


class SmtpBackend(Backend):
    Options = SmtpOptions

    def __init__(self, options: Mapping[str, Any], root: str) -> None:
        super().__init__(options, root)
        settings = SmtpOptions.model_validate(options)
        self.host = settings.host
        self.tls = settings.tls
        default_port = {"starttls": 587, "implicit": 465, "none": 25}[self.tls]
        self.port = settings.port or default_port
        self.timeout = settings.timeout
        self.max_per_connection = settings.max_per_connection
        self.username = settings.username
        self.password_env = settings.password_env
        ca_file = settings.ca_file
        self.ca_file = None if ca_file is None else os.path.join(root, ca_file)
        self.connections = settings.connections
        self.smtp: smtplib.SMTP | None = None
        self.sent_on_connection = 0
        self.last_reply = ""  # the server's last 250, the provider's id of a BDAT

    def _context(self) -> ssl.SSLContext:
        # Certificates are always verified; a private CA is added, never a bypass.
        return ssl.create_default_context(cafile=self.ca_file)

    def open(self) -> None:
        if self.smtp is not None:
            return
        try:
            smtp = self._session()
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"AUTH as {self.username} at {self.host}:{self.port} failed",
                permanent=True, code=exc.smtp_code, reply=_text(exc.smtp_error), connection=True,
                stage="connect",
            ) from None  # fmt: skip
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"{self.host}:{self.port} refused the session",
                permanent=exc.smtp_code >= 500, code=exc.smtp_code,
                reply=_text(exc.smtp_error), connection=True, stage="connect",
            ) from None  # fmt: skip
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(
                f"cannot connect to {self.host}:{self.port}",
                permanent=False, reply=str(exc), connection=True, stage="connect",
            ) from None  # fmt: skip
        self.smtp = smtp
        self.sent_on_connection = 0

    def _session(self) -> smtplib.SMTP:
        """A connected, greeted and (with a username) authenticated session."""
        if self.tls == "implicit":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self._context()
            )
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.tls == "starttls":
                smtp.starttls(context=self._context())
            smtp.ehlo_or_helo_if_needed()
            if self.username:
                smtp.login(str(self.username), self._password())
        except BaseException:
            # A session that failed half-way (STARTTLS, AUTH) is closed here: it used to
            # stay open, one socket leaked per attempt.
            smtp.close()
            raise
        return smtp

    def _password(self) -> str:
        if not self.password_env or not os.environ.get(str(self.password_env)):
            raise DeliveryError(
                "SMTP AUTH needs a password: set backend.password_env to the name of an "
                "environment variable and put the password in that variable",
                permanent=True, connection=True, stage="connect",
            )  # fmt: skip
        return os.environ[str(self.password_env)]

    def close(self) -> None:
        smtp, self.smtp = self.smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            # quit() can fail on a connection the server already closed; the socket is
            # closed below either way.
            pass
        finally:
            smtp.close()

    def _drop(self) -> None:
        smtp, self.smtp = self.smtp, None
        if smtp is not None:
            smtp.close()

    def send(self, message: bytes, envelope: Envelope) -> str:
        return self.send_message(Message((message,)), envelope)

    def send_message(self, message: Message, envelope: Envelope) -> str:
        smtp = self._session_for_next()
        # The commands are written directly: smtplib's mail()/rcpt() re-parse the
        # addresses (already validated) and data() runs two regular expressions over
        # every message. With PIPELINING (RFC 2920) the envelope goes in one write and
        # its replies are read together. CHUNKING (RFC 3030) is used only without
        # PIPELINING, where BDAT saves the round trip of DATA: behind a pipelined
        # envelope it stalls on servers that send the envelope's replies while the chunk
        # is still arriving (Postfix: 44 ms a message, its last reply held back until our
        # delayed ACK), and DATA with the next envelope behind it is one round trip too.
        chunking = smtp.has_extn("chunking") and not smtp.has_extn("pipelining")
        steps = _steps(envelope, message if chunking else None)
        with self._lost_as_error() as where:
            if smtp.has_extn("pipelining"):
                body = list(message.pieces) if chunking else []
                _write(_socket(smtp), [b"".join(step[2] for step in steps), *body])
                self._replies(smtp, steps, where)
            else:
                for index, step in enumerate(steps):
                    last = index == len(steps) - 1
                    _write(_socket(smtp), [step[2], *(message.pieces if chunking and last else ())])
                    self._replies(smtp, [step], where)
            if chunking:
                self.sent_on_connection += 1
                return self.last_reply
            where[0] = "dot"
            _write(_socket(smtp), list(message.transparent()))
            return self._final_reply(smtp)
        raise AssertionError("unreachable")  # _lost_as_error raises on every fault

    def send_many(self, take: Take) -> Generator[str | DeliveryError, None, None]:
        """With PIPELINING, each message's data goes in one write with
        the next message's envelope (RFC 2920 §3.1 allows the message content first in a
        group): one round trip a message instead of two. Results come in order; a message
        whose envelope the server accepted is always finished on this connection or the
        generator is closed and the connection dropped (never an empty message)."""
        self._if_still_there()
        fresh: list[tuple[Message, Envelope]] = []  # taken, to start from its envelope
        carried: tuple[Message, Envelope] | None = None  # accepted; the server waits for data
        for _ in range(1 << 62):  # bounded by what ``take`` hands out
            if carried is None:
                item = fresh.pop() if fresh else take(True)
                if item is None:
                    return
                try:
                    smtp = self._session_for_next()
                    if not smtp.has_extn("pipelining"):
                        yield self.send_message(*item)  # one command at a time
                        continue
                    steps = _steps(item[1], None)
                    with self._lost_as_error() as where:
                        _write(_socket(smtp), [b"".join(step[2] for step in steps)])
                        self._replies(smtp, steps, where)
                except DeliveryError as exc:
                    yield exc
                    continue
                current = item
            else:
                current, carried = carried, None
            room = self.sent_on_connection + 1 < self.max_per_connection
            following = take(False) if room else None
            outcome: str | DeliveryError
            try:
                outcome = self._data(current, following)
            except DeliveryError as exc:
                outcome = exc
            refused: DeliveryError | None = None
            if following is not None:
                if self.smtp is None:
                    fresh.append(following)  # lost with the connection: not yet begun
                else:
                    try:
                        with self._lost_as_error() as where:
                            self._replies(self.smtp, _steps(following[1], None), where)
                        carried = following
                    except DeliveryError as exc:
                        if exc.connection and self.smtp is None and exc.code is None:
                            fresh.append(following)  # the connection broke: start again
                        else:
                            refused = exc
            try:
                yield outcome
                if refused is not None:
                    yield refused
            except GeneratorExit:
                if carried is not None:
                    self._drop()  # it waits for data that will not come: end it unsent
                raise

    def _if_still_there(self) -> None:
        """A connection kept from an earlier run (a worker's, between tasks) is asked with
        NOOP whether it is still there: the server may have ended it while it was idle
        (Postfix after 300 s), and the first message written to it would be lost with it
        and deferred. One that does not answer 250 is dropped; the next message opens a
        new one."""
        if self.smtp is None:
            return
        try:
            code, _ = self.smtp.noop()
        except (OSError, smtplib.SMTPException):
            code = 0
        if code != 250:
            self._drop()

    def _data(self, current: tuple[Message, Envelope], following: tuple[Message, Envelope] | None
              ) -> str:  # fmt: skip
        """``current``'s data and terminating dot, with ``following``'s envelope in the same
        write; the reply to the dot."""
        smtp = self.smtp
        assert smtp is not None
        pieces = list(current[0].transparent())
        if following is not None:
            pieces.append(b"".join(step[2] for step in _steps(following[1], None)))
        with self._lost_as_error() as where:
            where[0] = "dot"
            _write(_socket(smtp), pieces)
            return self._final_reply(smtp, reset=following is None)
        raise AssertionError("unreachable")

    def _session_for_next(self) -> smtplib.SMTP:
        if self.smtp is not None and self.sent_on_connection >= self.max_per_connection:
            self.close()
        self.open()
        assert self.smtp is not None and self.smtp.sock is not None
        return self.smtp

    def _replies(self, smtp: smtplib.SMTP, steps: list[_Step], where: list[Stage]) -> None:
        """The replies to ``steps`` (written already), in order; the first refusal raised
        once all are read, so the session stays in step."""
        replies = []
        for step in steps:
            where[0] = step[1]  # what a lost connection is reported at
            replies.append(smtp.getreply())
            if replies[-1][0] == 250:
                self.last_reply = f"250 {_text(replies[-1][1])}".strip()
        for (what, stage, _, wanted), (code, reply) in zip(steps, replies, strict=True):
            if code not in wanted:
                if replies[-1][0] == 354:
                    # A server that took DATA after refusing the envelope waits for a
                    # message; ending it with a dot could deliver an empty one.
                    self._drop()
                raise self._refused(what, stage, code, reply)

    def _final_reply(self, smtp: smtplib.SMTP, reset: bool = True) -> str:
        code, reply = smtp.getreply()
        if code != 250:
            if reset:
                raise self._refused("end of DATA", "dot", code, reply)
            # Another envelope is on its way behind the dot: no RSET (the transaction
            # ended with the reply), and the connection goes only when the server says so.
            if code == 421:
                self._drop()
            raise DeliveryError(
                "end of DATA", permanent=500 <= code < 600, code=code, reply=_text(reply),
                connection=self.smtp is None, stage="dot",
            )  # fmt: skip
        self.sent_on_connection += 1
        return f"{code} {_text(reply)}".strip()

    @contextmanager
    def _lost_as_error(self) -> Iterator[list[Stage]]:
        """A fault of the connection as a DeliveryError at the stage the caller reached
        (a one-item list it updates)."""
        where: list[Stage] = ["mail"]
        try:
            yield where
        except DeliveryError:
            raise  # already says what happened (it is an OSError too: keep it from below)
        except smtplib.SMTPResponseException as exc:
            raise self._refused("SMTP", where[0], exc.smtp_code, exc.smtp_error) from None
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            # Reset, timeout (also after the final dot: the message may have arrived; it
            # is retried, and a duplicate carries the same Message-ID), or a closed socket.
            self._drop()
            raise DeliveryError(
                f"connection to {self.host}:{self.port} lost",
                permanent=False, reply=str(exc) or type(exc).__name__, connection=True,
                stage=where[0],
            ) from None  # fmt: skip

    def _refused(self, step: str, stage: Stage, code: int, reply: bytes | str) -> DeliveryError:
        """The server's refusal as an error; the session is reset for the next message
        (or dropped, when the server is closing it)."""
        self._reset_or_drop(code)
        return DeliveryError(
            step, permanent=500 <= code < 600, code=code, reply=_text(reply),
            connection=self.smtp is None, stage=stage,
        )  # fmt: skip

    def _reset_or_drop(self, code: int) -> None:
        if code == 421 or self.smtp is None:
            self._drop()  # 421: the server is closing the connection
            return
        try:
            self.smtp.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()


_Step = tuple[str, Stage, bytes, tuple[int, ...]]  # what, stage, the line, good replies


def _steps(envelope: Envelope, chunk: Message | None) -> list[_Step]:
    """MAIL FROM, RCPT TO, and DATA, or with ``chunk`` a BDAT of its size (the message
    follows the line)."""
    steps: list[_Step] = [
        ("MAIL FROM", "mail", f"MAIL FROM:<{envelope.sender}>\r\n".encode(), (250,)),
        # "RCPT TO", not the address: the ledger row has it, and the same refusal of
        # many recipients reads as one reason in `send` and `status`.
        ("RCPT TO", "rcpt", f"RCPT TO:<{envelope.recipient}>\r\n".encode(), (250, 251)),
    ]  # fmt: skip
    if chunk is not None:
        size = sum(len(piece) for piece in chunk.pieces)
        steps.append(("end of data", "dot", b"BDAT %d LAST\r\n" % size, (250,)))
    else:
        steps.append(("DATA", "data", b"DATA\r\n", (354,)))
    return steps


def _socket(smtp: smtplib.SMTP) -> socket.socket:
    assert smtp.sock is not None
    return smtp.sock


def _write(sock: socket.socket, pieces: list[bytes]) -> None:
    """All of ``pieces``, in order, without joining them into a copy first (one
    ``sendmsg`` for them all, as long as the socket takes them; TLS sockets join)."""
    if isinstance(sock, ssl.SSLSocket) or len(pieces) == 1:
        sock.sendall(b"".join(pieces))
        return
    views = [memoryview(piece) for piece in pieces if piece]
    for _ in range(1_000_000):  # bounded: every turn sends something or raises
        if not views:
            return
        sent = sock.sendmsg(views[:_IOV_MAX])
        while sent and views:
            if sent >= len(views[0]):
                sent -= len(views.pop(0))
            else:
                views[0] = views[0][sent:]
                sent = 0
    raise OSError("the socket took no data")


_IOV_MAX = 1024  # the pieces one sendmsg takes on Linux


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
