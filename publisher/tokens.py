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

from publisher.errors import ConfigError, Problem

_PAYLOAD = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAC_BYTES = 16  # 128 bits: forging one needs 2^128 tries


class Signer:
    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys or any(len(k) < 16 for k in keys):
            raise ValueError("every signing key must have at least 16 bytes")
        self.keys = tuple(keys)

    def sign(self, purpose: str, payload: str) -> str:
        if not _PAYLOAD.fullmatch(payload):
            raise ValueError(f"token payload must be a short id, not {payload!r}")
        return f"{payload}.{_mac(self.keys[0], purpose, payload)}"

    def verify(self, purpose: str, token: str) -> str | None:
        """The payload of a genuine token for ``purpose``; None for anything else."""
        payload, dot, mac = token.partition(".")
        if not dot or not _PAYLOAD.fullmatch(payload):
            return None
        for key in self.keys:
            if hmac.compare_digest(mac, _mac(key, purpose, payload)):
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
