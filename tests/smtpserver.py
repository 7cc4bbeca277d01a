"""An SMTP server on 127.0.0.1 (aiosmtpd) whose replies are scripted by recipient name.

reject* 550, full* 552, badaddr* 553, tempfail* 451, busy* 450, notls* 454, closing* 421,
reset* drops the connection after the final dot, slow* answers the final dot late, grey*
is greylisted (451 4.7.1 to its first RCPT, accepted from the second on); everyone else
is accepted and kept in ``received``. ``mail_reply`` and ``dot_reply`` make the server
refuse every MAIL FROM or every message; ``gate`` holds the first answers to the final dot
until that many sessions have begun a transaction (so that several senders overlap).
``extensions`` adds PIPELINING and CHUNKING (BDAT, implemented here) to the EHLO reply;
with PIPELINING, ``pipelined`` says of each MAIL FROM whether the client had sent the rest
of the envelope with it, ``followed`` (with ``watch_following``) of each message whether
the next MAIL FROM came with its data, and ``chunked`` of each message whether it came by BDAT.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult

RCPT_REPLIES = {
    "reject": "550 5.1.1 no such user",
    "full": "552 5.2.2 mailbox full",
    "badaddr": "553 5.1.3 bad destination address",
    "tempfail": "451 4.3.0 try again later",
    "busy": "450 4.2.1 mailbox busy",
    "notls": "454 4.7.0 TLS not available",
    "closing": "421 4.3.2 service shutting down",
}


@dataclass
class Script:
    received: list[tuple[str, str, bytes]] = field(default_factory=list)
    slow_seconds: float = 2.0
    mail_reply: str | None = None
    dot_reply: str | None = None
    gate: int = 0
    sessions: set[int] = field(default_factory=set)
    greylisted: set[str] = field(default_factory=set)
    rcpt_replies: list[tuple[str, str]] = field(default_factory=list)  # (address, reply)
    extensions: tuple[str, ...] = ()
    pipelined: list[bool] = field(default_factory=list)
    chunked: list[bool] = field(default_factory=list)
    followed: list[bool] = field(default_factory=list)
    watch_following: bool = False
    greetings: int = 0  # EHLOs: the sessions clients opened
    connections: list[tuple[asyncio.AbstractEventLoop, asyncio.BaseTransport]] = field(
        default_factory=list
    )

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        self.greetings += 1
        self.connections.append((server.loop, server.transport))
        extra = [f"250-{name}" for name in self.extensions]
        return [*responses[:-1], *extra, responses[-1]]

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        self.sessions.add(id(session))
        if "PIPELINING" in self.extensions:
            # A pipelining client has written RCPT TO with MAIL FROM, before any reply:
            # it is in the buffer now, or within two seconds at the latest.
            deadline = asyncio.get_running_loop().time() + 2
            while b"RCPT TO" not in bytes(server._reader._buffer):  # bounded: two seconds
                if asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.01)
            self.pipelined.append(b"RCPT TO" in bytes(server._reader._buffer))
        if self.mail_reply is not None:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        local = address.split("@")[0]
        reply = "250 OK"
        for prefix, refusal in RCPT_REPLIES.items():
            if local.startswith(prefix):
                reply = refusal
        if local.startswith("grey") and address not in self.greylisted:
            self.greylisted.add(address)
            reply = "451 4.7.1 greylisted, come back later"
        self.rcpt_replies.append((address, reply))
        if reply == "250 OK":
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        deadline = asyncio.get_running_loop().time() + 10
        while len(self.sessions) < self.gate:  # bounded: ten seconds at most
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.01)
        self.gate = 0  # open from now on
        if self.dot_reply is not None:
            return self.dot_reply
        recipient = envelope.rcpt_tos[0]
        if recipient.startswith("reset"):
            server.transport.close()
            return "451 never seen"
        if recipient.startswith("slow"):
            await asyncio.sleep(self.slow_seconds)
        self.received.append((envelope.mail_from, recipient, envelope.original_content))
        self.chunked.append(getattr(envelope, "chunked", False))
        if self.watch_following:
            # Whether the client wrote the next envelope with this message's data.
            deadline = asyncio.get_running_loop().time() + 0.5
            while b"MAIL FROM" not in bytes(server._reader._buffer):  # bounded: 0.5 s
                if asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.01)
            self.followed.append(b"MAIL FROM" in bytes(server._reader._buffer))
        return f"250 2.0.0 Ok: queued as Q{len(self.received)}"

    def hang_up(self) -> None:
        """End every client's connection from the server's side, as a server does with
        an idle one (returns once the server has closed them)."""
        for loop, transport in self.connections:

            async def close(transport: asyncio.BaseTransport = transport) -> None:
                transport.close()
                await asyncio.sleep(0)  # the close takes effect in the loop's next turn

            asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=10)
        self.connections.clear()


class ChunkingSMTP(SMTP):
    """aiosmtpd with BDAT (RFC 3030), offered when the script lists CHUNKING."""

    async def smtp_BDAT(self, arg: str) -> None:
        words = arg.split()
        if "CHUNKING" not in self.event_handler.extensions or not words or not words[0].isdigit():
            await self.push("502 5.5.1 BDAT not offered")
            return
        data = await self._reader.readexactly(int(words[0]))
        last = words[1:2] == ["LAST"]
        if self.envelope is None or not self.envelope.rcpt_tos:
            self._set_rset_state()  # type: ignore[no-untyped-call]
            await self.push("554 5.5.1 Error: no valid recipients")
            return
        chunks: list[bytes] = self.envelope.__dict__.setdefault("chunks", [])
        chunks.append(data)
        if not last:
            await self.push(f"250 2.0.0 {len(data)} octets received")
            return
        self.envelope.original_content = self.envelope.content = b"".join(chunks)
        self.envelope.__dict__["chunked"] = True
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push(status)


class ScriptedController(Controller):
    def factory(self) -> SMTP:
        return ChunkingSMTP(self.handler, **self.SMTP_kwargs)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def smtp_server(
    tls: ssl.SSLContext | None = None,
    password: str | None = None,
    implicit_tls: ssl.SSLContext | None = None,
    port: int | None = None,
) -> Iterator[tuple[Controller, Script]]:
    script = Script()
    kwargs: dict[str, Any] = {}
    if tls is not None:
        kwargs.update(tls_context=tls, require_starttls=True)
    if implicit_tls is not None:
        kwargs.update(ssl_context=implicit_tls)
    if password is not None:

        def check(
            server: Any, session: Any, envelope: Any, mechanism: str, auth: Any
        ) -> AuthResult:
            # handled=False: aiosmtpd itself answers (235, or 535 on failure)
            return AuthResult(success=auth.password == password.encode(), handled=False)

        kwargs.update(authenticator=check, auth_require_tls=False)
    controller = ScriptedController(
        script, hostname="127.0.0.1", port=port or free_port(), **kwargs
    )
    controller.start()
    try:
        yield controller, script
    finally:
        controller.stop()


def self_signed(folder: Path) -> tuple[ssl.SSLContext, Path]:
    """A certificate for 127.0.0.1 signed by itself; returns the server context and the
    PEM a client can trust."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file = folder / "cert.pem"
    key_file = folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file
