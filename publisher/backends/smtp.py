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
from typing import Any

from publisher.backends.base import Backend, DeliveryError, Envelope


class SmtpBackend(Backend):
    def __init__(self, options: Mapping[str, Any], root: str) -> None:
        super().__init__(options, root)
        self.host = str(options.get("host", "localhost"))
        self.tls = str(options.get("tls", "starttls"))
        if self.tls not in ("starttls", "implicit", "none"):
            raise ValueError(f"backend.tls: '{self.tls}' is not starttls, implicit or none")
        default_port = {"starttls": 587, "implicit": 465, "none": 25}[self.tls]
        self.port = int(options.get("port", default_port))
        self.timeout = float(options.get("timeout", 30))
        self.max_per_connection = int(options.get("max_per_connection", 100))
        self.username = options.get("username")
        self.password_env = options.get("password_env")
        ca_file = options.get("ca_file")
        self.ca_file = None if ca_file is None else os.path.join(root, str(ca_file))
        self.connections = int(options.get("connections", 1))
        self.smtp: smtplib.SMTP | None = None
        self.sent_on_connection = 0

    def _context(self) -> ssl.SSLContext:
        # Certificates are always verified; a private CA is added, never a bypass.
        return ssl.create_default_context(cafile=self.ca_file)

    def open(self) -> None:
        if self.smtp is not None:
            return
        try:
            if self.tls == "implicit":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=self._context()
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                if self.tls == "starttls":
                    smtp.starttls(context=self._context())
            smtp.ehlo_or_helo_if_needed()
            if self.username:
                smtp.login(str(self.username), self._password())
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"AUTH as {self.username} at {self.host}:{self.port} failed",
                permanent=True, code=exc.smtp_code, reply=_text(exc.smtp_error), connection=True,
            ) from None  # fmt: skip
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"{self.host}:{self.port} refused the session",
                permanent=exc.smtp_code >= 500, code=exc.smtp_code,
                reply=_text(exc.smtp_error), connection=True,
            ) from None  # fmt: skip
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(
                f"cannot connect to {self.host}:{self.port}",
                permanent=False, reply=str(exc), connection=True,
            ) from None  # fmt: skip
        self.smtp = smtp
        self.sent_on_connection = 0

    def _password(self) -> str:
        if not self.password_env or not os.environ.get(str(self.password_env)):
            raise DeliveryError(
                "SMTP AUTH needs a password: set backend.password_env to the name of an "
                "environment variable and put the password in that variable",
                permanent=True, connection=True,
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
        try:
            # The commands are written directly: smtplib's mail()/rcpt() re-parse the
            # addresses (already validated) and data() runs two regular expressions over
            # every message; together that was a third of the CPU per message.
            code, reply = _command(smtp, f"MAIL FROM:<{envelope.sender}>")
            if code != 250:
                self._reset_or_drop(code)
                raise _reply_error("MAIL FROM", code, reply)
            code, reply = _command(smtp, f"RCPT TO:<{envelope.recipient}>")
            if code not in (250, 251):
                self._reset_or_drop(code)
                raise _reply_error(f"RCPT TO {envelope.recipient}", code, reply)
            code, reply = _command(smtp, "DATA")
            if code != 354:
                self._reset_or_drop(code)
                raise _reply_error("DATA", code, reply)
            smtp.send(_transparent(message))
            code, reply = smtp.getreply()
            if code != 250:
                self._reset_or_drop(code)
                raise _reply_error("end of DATA", code, reply)
        except DeliveryError:
            raise  # already says what happened (it is an OSError too: keep it from below)
        except smtplib.SMTPResponseException as exc:
            self._reset_or_drop(exc.smtp_code)
            raise _reply_error("SMTP", exc.smtp_code, exc.smtp_error) from None
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            # Reset, timeout (also after the final dot: the message may have arrived; it
            # is retried, and a duplicate carries the same Message-ID), or a closed socket.
            self._drop()
            raise DeliveryError(
                f"connection to {self.host}:{self.port} lost",
                permanent=False, reply=str(exc) or type(exc).__name__, connection=True,
            ) from None  # fmt: skip
        self.sent_on_connection += 1
        return f"{code} {_text(reply)}".strip()

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


def _reply_error(step: str, code: int, reply: bytes | str) -> DeliveryError:
    return DeliveryError(
        step,
        permanent=500 <= code < 600,
        code=code,
        reply=_text(reply),
        connection=code == 421,
    )
