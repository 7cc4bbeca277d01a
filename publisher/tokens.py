"""Signed, opaque tokens for links in email (unsubscribe, preferences, confirmation).

A token is ``<payload>.<mac>``: the payload is a subscriber's public id (never an address),
the MAC an HMAC-SHA256 over the purpose and the payload, so a token made for one purpose is
worthless for another. Keys rotate: the first key signs, every key verifies, so links in
mail already sent keep working after a new key is put in front.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Sequence

from publisher.config import Publication
from publisher.errors import ConfigError, Problem

UNSUBSCRIBE = "unsubscribe"  # the token purpose ("salt") of unsubscribe links

_PAYLOAD = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAC_BYTES = 16  # 128 bits: forging one needs 2^128 tries


_ISSUED = re.compile(r"[0-9a-f]{1,12}")
_MAC_TEXT = re.compile(r"[A-Za-z0-9_-]{22}")
FUTURE_SLACK = 300  # seconds a token may seem to come from the future (clocks differ)


class Signer:
    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys or any(len(k) < 16 for k in keys):
            raise ValueError("every signing key must have at least 16 bytes")
        self.keys = tuple(keys)

    def sign(self, purpose: str, payload: str, issued: int | None = None) -> str:
        """A token for ``payload``; with ``issued`` (seconds since the epoch) one that
        ``verify`` accepts only for a limited time."""
        if not _PAYLOAD.fullmatch(payload):
            raise ValueError(f"token payload must be a short id, not {payload!r}")
        if issued is None:
            return f"{payload}.{_mac(self.keys[0], purpose, payload)}"
        return f"{payload}.{issued:x}.{_mac(self.keys[0], purpose, f'{payload}.{issued:x}')}"

    def verify(
        self, purpose: str, token: str, now: float | None = None, max_age: float | None = None
    ) -> str | None:
        """The payload of a genuine token for ``purpose``; None for anything else. With
        ``max_age``, only a token issued at most that many seconds before ``now``."""
        # Anything but the token alphabet is refused before any comparison: compare_digest
        # raises on non-ASCII text, and that was a server error for a crafted link.
        if not token.isascii() or len(token) > 128:
            return None
        parts = token.split(".")
        if max_age is None:
            if len(parts) != 2:
                return None
            payload, mac = parts
            signed = payload
        else:
            if len(parts) != 3 or not _ISSUED.fullmatch(parts[1]) or now is None:
                return None
            payload, issued, mac = parts
            age = now - int(issued, 16)
            if age > max_age or age < -FUTURE_SLACK:
                return None
            signed = f"{payload}.{issued}"
        if not _PAYLOAD.fullmatch(payload) or not _MAC_TEXT.fullmatch(mac):
            return None
        given = mac.encode("ascii")
        for key in self.keys:
            if hmac.compare_digest(given, _mac(key, purpose, signed).encode("ascii")):
                return payload
        return None


def _mac(key: bytes, purpose: str, payload: str) -> str:
    digest = hmac.new(key, f"{purpose}\0{payload}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:_MAC_BYTES]).rstrip(b"=").decode()


def signer_from_environment(variable: str, source: str, line: int | None) -> Signer:
    """Keys from the environment variable named in schedule.yaml: one or more secrets
    separated by spaces, newest first."""
    value = os.environ.get(variable, "")
    keys = [k.encode() for k in value.split()]
    if not keys or any(len(k) < 16 for k in keys):
        raise ConfigError(
            [
                Problem(
                    source,
                    line,
                    "email.secret_env",
                    f"set the environment variable {variable} to a random secret of at least "
                    "16 characters (e.g. the output of: python3 -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))'); several, space-separated, rotate keys",
                )
            ]
        )
    return Signer(keys)


def publication_signer(pub: Publication) -> Signer:
    """The signer of a publication: keys from the variable ``email.secret_env`` names."""
    variable = pub.config.email.secret_env
    return signer_from_environment(variable, pub.path.name, pub.line_of("email", "secret_env"))
