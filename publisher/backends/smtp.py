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
import re
import smtplib
import ssl
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from publisher.backends.base import Backend, DeliveryError, Envelope, Stage
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
        if self.smtp is not None and self.sent_on_connection >= self.max_per_connection:
            self.close()
        self.open()
        smtp = self.smtp
        assert smtp is not None
        stage: Stage = "mail"
        try:
            # The commands are written directly: smtplib's mail()/rcpt() re-parse the
            # addresses (already validated) and data() runs two regular expressions over
            # every message; together that was a third of the CPU per message.
            code, reply = _command(smtp, f"MAIL FROM:<{envelope.sender}>")
            if code != 250:
                raise self._refused("MAIL FROM", stage, code, reply)
            stage = "rcpt"
            code, reply = _command(smtp, f"RCPT TO:<{envelope.recipient}>")
            if code not in (250, 251):
                raise self._refused(f"RCPT TO {envelope.recipient}", stage, code, reply)
            stage = "data"
            code, reply = _command(smtp, "DATA")
            if code != 354:
                raise self._refused("DATA", stage, code, reply)
            stage = "dot"
            smtp.send(_transparent(message))
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


def _command(smtp: smtplib.SMTP, line: str) -> tuple[int, bytes]:
    smtp.putcmd(line)
    return smtp.getreply()


def _transparent(message: bytes) -> bytes:
    """The DATA payload: CRLF line ends, leading dots doubled (RFC 5321 §4.5.2), and the
    terminating dot. Messages that are clean CRLF already (ours are) take the fast path."""
    crlf = message.count(b"\r\n")
    if message.count(b"\n") != crlf or message.count(b"\r") != crlf:
        message = re.sub(rb"\r\n|\r|\n", b"\r\n", message)
    if message.startswith(b"."):
        message = b"." + message
    message = message.replace(b"\r\n.", b"\r\n..")
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message + b".\r\n"


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
