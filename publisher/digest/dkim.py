"""DKIM signatures (RFC 6376), RSA-SHA256 and optionally Ed25519-SHA256 (RFC 8463), made
through OpenSSL (the ``cryptography`` package) with all that is common to an issue's
messages prepared once.

An issue's messages differ only in a few header lines (Date, To, Message-ID, List-Unsubscribe)
and in a few slots of the body. So, per issue:

* the signed header fields that every message shares are canonicalized (``relaxed``) and
  hashed first, in the order ``h=`` lists them; each message copies that hash state and
  adds its own fields and the DKIM-Signature field;
* the body (``simple`` canonicalization: the bytes as they are, trailing empty lines
  reduced to one CRLF) is hashed up to the first slot once; each message copies that
  state and adds the rest.

What is left per message is one RSA operation (and one Ed25519 operation) over a hash.
``t=`` is left out, so the same issue signs to the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from publisher.backends.base import Message

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    from publisher.digest.message import MessageTemplate

# Signed when present, in this order: the fields every message of an issue shares, then
# the recipient's own. From and Subject are signed once more than they occur, so that no
# second From or Subject can be added without breaking the signature (RFC 6376 §8.15).
SHARED = (
    b"from", b"reply-to", b"subject", b"date", b"mime-version", b"content-type",
    b"list-id", b"list-unsubscribe-post", b"auto-submitted",
)  # fmt: skip
OWN = (b"date", b"to", b"cc", b"message-id", b"list-unsubscribe")
OVERSIGNED = (b"from", b"subject")

Algorithm = Literal["rsa-sha256", "ed25519-sha256"]
_WSP = re.compile(rb"[ \t]+")
_FIELD_START = re.compile(rb"\r\n(?![ \t])")


@dataclass(frozen=True)
class Key:
    """One signing key: ``d=`` and ``s=`` of its signatures, and the private key."""

    domain: str
    selector: str
    private: RSAPrivateKey | Ed25519PrivateKey

    @property
    def algorithm(self) -> Algorithm:
        from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

        return "rsa-sha256" if isinstance(self.private, RSAPrivateKey) else "ed25519-sha256"

    def sign(self, digest: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, utils
        from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

        if isinstance(self.private, RSAPrivateKey):
            return self.private.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        return self.private.sign(digest)  # RFC 8463 §3: PureEdDSA over the SHA-256 hash


def fields(block: bytes) -> list[tuple[bytes, bytes]]:
    """A header block's fields as (lower-case name, the whole field with its CRLF)."""
    if not block:
        return []
    out = []
    for raw in _FIELD_START.split(block.removesuffix(b"\r\n")):
        out.append((raw.partition(b":")[0].strip(b" \t").lower(), raw + b"\r\n"))
    return out


def relaxed(field: bytes) -> bytes:
    """RFC 6376 §3.4.2: name in lower case, the value unfolded, runs of spaces and tabs
    made one space, none at its ends; one CRLF."""
    name, _, value = field.rstrip(b"\r\n").partition(b":")
    value = _WSP.sub(b" ", value.replace(b"\r\n", b"")).strip(b" ")
    return name.strip(b" \t").lower() + b":" + value + b"\r\n"


def _fold(text: str, width: int = 76) -> str:
    """``text`` (no spaces of its own) broken into lines of at most ``width`` characters,
    each continued with CRLF and a space, which DKIM's tags allow anywhere in ``b=``."""
    return "\r\n ".join(text[i : i + width] for i in range(0, len(text), width))


def _fold_list(names: list[str], width: int = 70) -> str:
    """``h=``'s names joined by colons, a line break (FWS, which ``h=`` allows around
    each colon) before a name that would pass ``width``."""
    lines = [""]
    for name in names:
        if lines[-1] and len(lines[-1]) + len(name) + 1 > width:
            lines[-1] += ":"
            lines.append(name)
        else:
            lines[-1] += (":" if lines[-1] else "") + name
    return "\r\n  ".join(lines)


class Signer:
    """Signs the messages of one template with one or more keys."""

    def __init__(self, template: MessageTemplate, keys: Sequence[Key]) -> None:
        self.keys = tuple(keys)
        shared = {name: raw for name, raw in fields(template.head) if name in SHARED}
        self.shared_names = [name for name in SHARED if name in shared]
        self.shared_state = hashlib.sha256()
        for name in self.shared_names:
            self.shared_state.update(relaxed(shared[name]))
        body = template.body
        first = body[0]
        assert isinstance(first, bytes) and first.startswith(b"\r\n")
        last = body[-1]
        assert isinstance(last, bytes)
        self.body_state = hashlib.sha256()
        self.whole_body: bytes | None = None
        if len(body) == 1:
            self.body_state.update(_simple_end(first[2:]))
            self.whole_body = base64.b64encode(self.body_state.digest())
        else:
            self.body_state.update(first[2:])
            self.last = _simple_end(last)

    def sign(self, message: Message, own_headers: bytes) -> Message:
        """``message`` with DKIM-Signature fields on top; ``own_headers``: the recipient's
        header lines, as ``MessageTemplate.personalize`` was given them."""
        if self.whole_body is not None:
            body_hash = self.whole_body
        else:
            state = self.body_state.copy()
            # pieces: head, own headers, the first body segment (hashed above), ..., last
            for piece in message.pieces[3:-1]:
                state.update(piece)
            state.update(self.last)
            body_hash = base64.b64encode(state.digest())
        own = {name: raw for name, raw in fields(own_headers) if name in OWN}
        own_names = [name for name in OWN if name in own]
        names_text = _fold_list([n.decode() for n in (*self.shared_names, *own_names, *OVERSIGNED)])
        own_canonical = b"".join(relaxed(own[name]) for name in own_names)
        signatures = []
        for key in self.keys:
            unsigned = (
                f"DKIM-Signature: v=1; a={key.algorithm}; c=relaxed/simple; d={key.domain};\r\n"
                f" s={key.selector};\r\n h={names_text};\r\n"
                f" bh={body_hash.decode()};\r\n b="
            ).encode("ascii")
            state = self.shared_state.copy()
            state.update(own_canonical)
            state.update(relaxed(unsigned).removesuffix(b"\r\n"))
            value = base64.b64encode(key.sign(state.digest())).decode()
            signatures.append(unsigned + _fold(value, 72).encode() + b"\r\n")
        head = b"".join(signatures)
        stuffed = None if message.stuffed is None else (head, *message.stuffed)
        return Message((head, *message.pieces), stuffed)


def _simple_end(data: bytes) -> bytes:
    """The end of a body as ``simple`` canonicalization hashes it: one CRLF at the end."""
    return data.rstrip(b"\r\n") + b"\r\n" if data.endswith(b"\r\n") else data + b"\r\n"


def load_key(pem: bytes, domain: str, selector: str) -> Key:
    """A key from PEM; ValueError (saying what is wrong) when it is not an RSA key of at
    least 1024 bits or an Ed25519 key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not an unencrypted PEM private key ({exc})") from None
    if isinstance(private, RSAPrivateKey):
        if private.key_size < 1024:
            raise ValueError(f"an RSA key of {private.key_size} bits; use 2048 (RFC 8301)")
        return Key(domain, selector, private)
    if isinstance(private, Ed25519PrivateKey):
        return Key(domain, selector, private)
    raise ValueError(f"a {type(private).__name__}; DKIM signs with RSA or Ed25519 keys")
