"""One issue, one recipient: the finished message bytes.

Only what differs per recipient happens here — the To, Message-ID and List-Unsubscribe
headers, the name and unsubscribe URL in the body, and the optional DKIM signature, which
must come last because it signs the final headers.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from publisher.config import Publication
from publisher.digest.issue import Issue
from publisher.errors import ConfigError, Problem
from publisher.headers import clean_text, format_address
from publisher.tokens import Signer

UNSUBSCRIBE = "unsubscribe"  # the token purpose ("salt") of unsubscribe links
DKIM_HEADERS = (
    b"from", b"to", b"subject", b"date", b"message-id",
    b"list-unsubscribe", b"list-unsubscribe-post",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    name: str = ""
    id: str = "0"  # the subscriber's public id: what a token carries instead of an address


@dataclass(frozen=True)
class Letters:
    """Everything needed to turn an issue into messages, prepared once per issue."""

    issue: Issue
    domain: str
    unsubscribe_url: str
    unsubscribe_mailto: str | None
    signer: Signer
    dkim: tuple[bytes, bytes, bytes] | None  # selector, domain, private key (PEM)

    @property
    def sender(self) -> str:
        return self.issue.sender[1]

    def message_id(self, recipient: Recipient) -> str:
        # Derived, not random: a re-send after a crash carries the same Message-ID, so
        # receivers and people can tell it is the same message.
        digest = hashlib.sha256(f"{self.issue.key}\0{recipient.address}".encode()).hexdigest()
        return f"<{self.issue.key}.{digest[:24]}@{self.domain}>"

    def unsubscribe_link(self, recipient: Recipient) -> str:
        token = self.signer.sign(UNSUBSCRIBE, recipient.id)
        return self.unsubscribe_url.replace("{token}", token)

    def render(self, recipient: Recipient) -> bytes:
        link = self.unsubscribe_link(recipient)
        # RFC 8058 §3.1: one HTTPS URI (a mailto may follow), on one line, never encoded.
        unsubscribe = f"<{link}>"
        if self.unsubscribe_mailto:
            unsubscribe += f", <mailto:{self.unsubscribe_mailto}?subject=unsubscribe>"
        headers = (
            f"To: {format_address(recipient.name, recipient.address)}\r\n"
            f"Message-ID: {self.message_id(recipient)}\r\n"
            f"List-Unsubscribe: {unsubscribe}\r\n"
        ).encode("ascii")
        # The body shows the name exactly as the header does: cleaned the same way.
        name = clean_text(recipient.name, 100)
        message = self.issue.message.personalize(headers, {"name": name, "unsubscribe_url": link})
        return message if self.dkim is None else dkim_sign(message, self.dkim)


def dkim_sign(message: bytes, settings: tuple[bytes, bytes, bytes]) -> bytes:
    """The message with a DKIM-Signature over its final headers (those it has of
    DKIM_HEADERS)."""
    import dkim  # only when signing is configured

    selector, domain, key = settings
    signature: bytes = dkim.sign(message, selector, domain, key, include_headers=list(DKIM_HEADERS))
    return signature + message


def dkim_settings(pub: Publication) -> tuple[bytes, bytes, bytes] | None:
    """Selector, domain and private key when DKIM is configured."""
    settings = pub.config.email.dkim
    if settings is None:
        return None
    return settings.selector.encode(), settings.domain.encode(), _dkim_key(pub)


def prepare(pub: Publication, issue: Issue, signer: Signer) -> Letters:
    email = pub.config.email
    if email.unsubscribe_url is None or "{token}" not in email.unsubscribe_url:
        raise ConfigError(
            [
                Problem(
                    pub.path.name,
                    pub.line_of("email", "unsubscribe_url") or pub.line_of("email"),
                    "email.unsubscribe_url",
                    "digests need an https URL with {token}, e.g. "
                    "https://example.org/unsubscribe/{token} (Gmail and Yahoo require "
                    "one-click unsubscribe)",
                )
            ]
        )
    if not email.unsubscribe_url.startswith("https://"):
        raise ConfigError(
            [
                Problem(
                    pub.path.name,
                    pub.line_of("email", "unsubscribe_url"),
                    "email.unsubscribe_url",
                    "must be https (RFC 8058)",
                )
            ]
        )
    domain = issue.sender[1].rsplit("@", 1)[1]
    return Letters(
        issue, domain, email.unsubscribe_url, email.unsubscribe_mailto, signer, dkim_settings(pub)
    )


def _dkim_key(pub: Publication) -> bytes:
    settings = pub.config.email.dkim
    assert settings is not None
    line = pub.line_of("email", "dkim")
    if settings.key_env is not None:
        value = os.environ.get(settings.key_env)
        if not value:
            raise ConfigError(
                [Problem(pub.path.name, line, "email.dkim.key_env",
                         f"set {settings.key_env} to the DKIM private key (PEM)")]
            )  # fmt: skip
        return value.encode()
    assert settings.key_file is not None
    path = Path(pub.root, settings.key_file)
    try:
        return path.read_bytes()
    except OSError as exc:
        what = f"cannot read {path}: {exc.strerror}"
        raise ConfigError([Problem(pub.path.name, line, "email.dkim.key_file", what)]) from None
