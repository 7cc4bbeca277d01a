"""One issue, one recipient: the finished message bytes.

Only what differs per recipient happens here — the Date, To, Message-ID and List-Unsubscribe
headers, the name and unsubscribe URL in the body, and the optional DKIM signatures, which
come last because they sign the final headers.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

from publisher.backends.base import Message
from publisher.config import Publication
from publisher.config.models import DkimKey
from publisher.digest import dkim
from publisher.digest.issue import Issue
from publisher.errors import ConfigError, Problem
from publisher.headers import clean_text, format_address
from publisher.tokens import UNSUBSCRIBE, Signer


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    name: str = ""
    id: str = "0"  # the subscriber's public id: what a token carries instead of an address
    zone: str | None = None  # their time zone: the Date of a local-time digest's copy
    # When their row was claimed: no copy is dated later (a zone changed after the issue
    # was composed would date it at the new zone's hour, maybe still to come).
    claimed_at: float | None = None


@dataclass(frozen=True)
class Letters:
    """Everything needed to turn an issue into messages, prepared once per issue."""

    issue: Issue
    domain: str
    unsubscribe_url: str
    unsubscribe_mailto: str | None
    signer: Signer
    # Made for each of the issue's shapes (named, unnamed) when DKIM is configured.
    signing: tuple[dkim.Signer, dkim.Signer] | None
    # A local-time digest's (or one with quiet hours): each copy dated when it is first
    # due in the recipient's zone, not hours before at the compose (clients sort by Date,
    # and a Date long before the mail arrived looks forged). None: the issue's date.
    dated: Callable[[str | None], datetime] | None = None

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
        return bytes(self.letter(recipient))

    def letter(self, recipient: Recipient) -> Message:
        """The recipient's message: the issue's, with their Date, To, Message-ID and
        List-Unsubscribe headers and their name and unsubscribe link in the body."""
        token = self.signer.sign(UNSUBSCRIBE, recipient.id)
        link = self.unsubscribe_url.replace("{token}", token)
        # RFC 8058 §3.1: one HTTPS URI (a mailto may follow), on one line, never encoded.
        unsubscribe = f"<{link}>"
        if self.unsubscribe_mailto:
            # The token in the subject says who asks, whatever address the mail comes
            # from (a forwarding or an alias); the token alphabet needs no escaping.
            unsubscribe += f", <mailto:{self.unsubscribe_mailto}?subject=unsubscribe%20{token}>"
        date = self.issue.date if self.dated is None else self.dated(recipient.zone)
        if recipient.claimed_at is not None and date.timestamp() > recipient.claimed_at:
            date = datetime.fromtimestamp(recipient.claimed_at, UTC)
        headers = (
            f"Date: {format_datetime(date)}\r\n"
            f"To: {format_address(recipient.name, recipient.address)}\r\n"
            f"Message-ID: {self.message_id(recipient)}\r\n"
            f"List-Unsubscribe: {unsubscribe}\r\n"
        ).encode("ascii")
        # The body shows the name exactly as the header does: cleaned the same way.
        name = clean_text(recipient.name, 100)
        shape = self.issue.shape(name)
        message = shape.message.personalize(headers, {"name": name, "unsubscribe_url": link})
        if self.signing is None:
            return message
        return self.signing[shape is self.issue.unnamed].sign(message, headers)


def dkim_keys(pub: Publication) -> list[dkim.Key]:
    """The keys that sign every message (none when DKIM is not configured): RSA, and
    Ed25519 as a second signature when ``email.dkim.ed25519`` is given."""
    settings = pub.config.email.dkim
    if settings is None:
        return []
    keys = [_dkim_key(pub, settings, "email.dkim", "rsa-sha256")]
    if settings.ed25519 is not None:
        keys.append(_dkim_key(pub, settings.ed25519, "email.dkim.ed25519", "ed25519-sha256"))
    return keys


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
    keys = dkim_keys(pub)
    return Letters(
        issue, domain, email.unsubscribe_url, email.unsubscribe_mailto, signer,
        (dkim.Signer(issue.named.message, keys), dkim.Signer(issue.unnamed.message, keys))
        if keys else None,
    )  # fmt: skip


def _dkim_key(
    pub: Publication, settings: DkimKey, where: str, algorithm: dkim.Algorithm
) -> dkim.Key:
    assert pub.config.email.dkim is not None
    domain = pub.config.email.dkim.domain
    path = where.split(".")

    def problem(key: str, what: str) -> ConfigError:
        line = pub.line_of(*path, key) or pub.line_of(*path) or pub.line_of("email", "dkim")
        return ConfigError([Problem(pub.path.name, line, f"{where}.{key}", what)])

    if settings.key_env is not None:
        key = "key_env"
        value = os.environ.get(settings.key_env)
        if not value:
            raise problem(key, f"set {settings.key_env} to the DKIM private key (PEM)")
        pem = value.encode()
    else:
        assert settings.key_file is not None
        key = "key_file"
        file = Path(pub.root, settings.key_file)
        try:
            pem = file.read_bytes()
        except OSError as exc:
            raise problem(key, f"cannot read {file}: {exc.strerror}") from None
    try:
        loaded = dkim.load_key(pem, domain, settings.selector)
    except ValueError as exc:
        raise problem(key, str(exc)) from None
    if loaded.algorithm != algorithm:
        wanted = "an RSA" if algorithm == "rsa-sha256" else "an Ed25519"
        raise problem(key, f"needs {wanted} key, this is {loaded.algorithm}")
    return loaded
