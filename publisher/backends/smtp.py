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
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from publisher.backends.base import Backend, DeliveryError, Envelope, Message, Stage
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
        if self.smtp is not None and self.sent_on_connection >= self.max_per_connection:
            self.close()
        self.open()
        smtp = self.smtp
        assert smtp is not None and smtp.sock is not None
        # The commands are written directly: smtplib's mail()/rcpt() re-parse the
        # addresses (already validated) and data() runs two regular expressions over
        # every message. With PIPELINING (RFC 2920) the envelope goes in one write and
        # its replies are read together; with CHUNKING (RFC 3030) the message goes in the
        # same write as one BDAT, so a message costs one round trip and no dot-stuffing.
        pipelining = smtp.has_extn("pipelining")
        chunking = smtp.has_extn("chunking")
        steps: list[tuple[str, Stage, bytes, tuple[int, ...]]] = [
            ("MAIL FROM", "mail", f"MAIL FROM:<{envelope.sender}>\r\n".encode(), (250,)),
            (f"RCPT TO {envelope.recipient}", "rcpt",
             f"RCPT TO:<{envelope.recipient}>\r\n".encode(), (250, 251)),
        ]  # fmt: skip
        if chunking:
            size = sum(len(piece) for piece in message.pieces)
            steps.append(("end of data", "dot", b"BDAT %d LAST\r\n" % size, (250,)))
        else:
            steps.append(("DATA", "data", b"DATA\r\n", (354,)))
        stage: Stage = "mail"
        try:
            if pipelining:
                body = list(message.pieces) if chunking else []
                _write(smtp.sock, [b"".join(step[2] for step in steps), *body])
                replies = []
                for _, step_stage, _, _ in steps:
                    stage = step_stage  # what a lost connection is reported at
                    replies.append(smtp.getreply())
            else:
                replies = []
                for index, (_, step_stage, line, wanted) in enumerate(steps):
                    stage = step_stage
                    last = index == len(steps) - 1
                    _write(smtp.sock, [line, *(message.pieces if chunking and last else ())])
                    replies.append(smtp.getreply())
                    if replies[-1][0] not in wanted:
                        break
            for (what, step_stage, _, wanted), (code, reply) in zip(steps, replies, strict=False):
                if code not in wanted:
                    if replies[-1][0] == 354:
                        # A server that took DATA after refusing the envelope waits for
                        # a message; ending it with a dot could deliver an empty one.
                        self._drop()
                    raise self._refused(what, step_stage, code, reply)
            if not chunking:
                stage = "dot"
                _write(smtp.sock, list(message.transparent()))
                code, reply = smtp.getreply()
                if code != 250:
                    raise self._refused("end of DATA", stage, code, reply)
        except DeliveryError:
            raise  # already says what happened (it is an OSError too: keep it from below)
        except smtplib.SMTPResponseException as exc:
            raise self._refused("SMTP", stage, exc.smtp_code, exc.smtp_error) from None
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            # Reset, timeout (also after the final dot: the message may have arrived; it
            # is retried, and a duplicate carries the same Message-ID), or a closed socket.
            self._drop()
            raise DeliveryError(
                f"connection to {self.host}:{self.port} lost",
                permanent=False, reply=str(exc) or type(exc).__name__, connection=True,
                stage=stage,
            ) from None  # fmt: skip
        self.sent_on_connection += 1
        return f"{code} {_text(reply)}".strip()

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
