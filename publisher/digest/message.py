"""A MIME message encoded once per issue, personalized per recipient by substitution.

``EmailMessage.as_bytes()`` costs ~4 ms a message; a digest goes to thousands. So the issue's
message is encoded once, into segments of finished bytes with *slots* between them for the
few per-recipient values, and each recipient costs a join of bytes.

The slots must survive the transfer encoding. The bodies are quoted-printable, which keeps
ASCII letters and digits as they are but breaks lines longer than 76 characters. So each
slot stands on a line of its own (a soft line break, ``=`` CRLF, before and after it) and
the value put into it is quoted-printable encoded, with its own soft breaks, at
substitution time: lines stay within RFC 2045's 76 characters whatever the value's length.
"""

from __future__ import annotations

import binascii
import hashlib
import html
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from publisher.backends.base import Message, stuff

CRLF = b"\r\n"
SOFT_BREAK = b"=\r\n"


@dataclass(frozen=True)
class Slot:
    """A per-recipient value in a body part; ``html`` values are HTML-escaped first."""

    name: str
    html: bool


Segment = bytes | Slot


MARKER_PREFIX = "XPUBSLOT"
_LOOK_ALIKE = re.compile(MARKER_PREFIX, re.I)


def slot_marker(name: str) -> str:
    """The text that stands for a per-recipient value while an issue is rendered: letters
    and digits only, so HTML escaping, CSS inlining and quoted-printable leave it intact,
    and random, made anew for every issue, so that no article can write it on purpose."""
    return f"{MARKER_PREFIX}{name.upper()}X{secrets.token_hex(16)}X"


def scrub_markers(text: str) -> str:
    """``text`` with everything that starts like a slot marker broken up."""
    return _LOOK_ALIKE.sub("XPUB-SLOT", text)


def encode_qp_with_slots(text: str, markers: Mapping[str, str], html_part: bool) -> list[Segment]:
    """Quoted-printable body (CRLF line ends) split around the slot markers in ``text``."""
    if not markers:
        return [_qp(text)]
    by_marker = {marker: name for name, marker in markers.items()}
    pattern = re.compile("|".join(re.escape(m) for m in by_marker))
    segments: list[Segment] = []
    position = 0
    for match in pattern.finditer(text):
        segments.append(_qp(text[position : match.start()]) + SOFT_BREAK)
        segments.append(Slot(by_marker[match.group()], html_part))
        segments.append(SOFT_BREAK)
        position = match.end()
    segments.append(_qp(text[position:]))
    return segments


def _qp(text: str) -> bytes:
    data = text.replace("\r\n", "\n").encode("utf-8")
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    return encoded.replace(b"\n", CRLF)


def encode_value(value: str, html_part: bool) -> bytes:
    """A per-recipient value as it goes into a slot."""
    if html_part:
        value = html.escape(value, quote=True)
    return _qp(value)


@dataclass(frozen=True)
class MessageTemplate:
    """An issue's message with holes: common headers, then per-recipient headers, then
    the body segments. The SMTP DATA form of every segment (dots doubled) is made here,
    once per issue; a recipient's values are stuffed on their own."""

    head: bytes  # header lines common to every recipient, each ending in CRLF
    body: tuple[Segment, ...]  # starts with the blank line that ends the header
    stuffed: tuple[bytes | None, ...] = field(init=False)  # None where body has a slot
    starts_line: tuple[bool, ...] = field(init=False)  # whether each segment begins a line
    end: bytes = field(init=False)  # what follows the body in DATA: the terminating dot
    stuffed_head: bytes = field(init=False)

    def __post_init__(self) -> None:
        stuffed: list[bytes | None] = []
        starts: list[bool] = []
        line_start = True  # after the header lines
        for segment in self.body:
            starts.append(line_start)
            if isinstance(segment, bytes):
                stuffed.append(stuff(segment, line_start))
                line_start = segment.endswith(CRLF)
            else:
                stuffed.append(None)
                line_start = False  # a value is one line, continued by what follows
        last = self.body[-1]
        assert isinstance(last, bytes), "a body ends with fixed bytes"
        object.__setattr__(self, "stuffed", tuple(stuffed))
        object.__setattr__(self, "starts_line", tuple(starts))
        object.__setattr__(self, "end", b".\r\n" if last.endswith(CRLF) else b"\r\n.\r\n")
        object.__setattr__(self, "stuffed_head", stuff(self.head, True))

    def personalize(self, headers: bytes, values: Mapping[str, str]) -> Message:
        """The finished message for one recipient. ``headers``: that recipient's header
        lines (Date, To, Message-ID, List-Unsubscribe), each ending in CRLF."""
        pieces = [self.head, headers]
        wire = [self.stuffed_head, stuff(headers, True)]
        for segment, ready, line_start in zip(
            self.body, self.stuffed, self.starts_line, strict=True
        ):
            if ready is not None:
                assert isinstance(segment, bytes)
                pieces.append(segment)
                wire.append(ready)
            else:
                assert isinstance(segment, Slot)
                value = encode_value(values[segment.name], segment.html)
                pieces.append(value)
                wire.append(stuff(value, line_start))
        wire.append(self.end)
        return Message(pieces, wire)


def build_message(
    head: Sequence[str],
    parts: Sequence[tuple[str, str]],
    markers: Mapping[str, str],
    key: str,
) -> MessageTemplate:
    """The one way a message of this publisher is put together, digests and confirmation
    mails alike.

    ``head``: the common header lines, finished (ASCII, encoded words where needed),
    without line ends. ``parts``: (media subtype, text) of each body part, in the order of
    preference RFC 2046 gives (plain first); one part makes a single-part message, more a
    ``multipart/alternative`` whose boundary is derived from ``key``, so that the same
    issue gives the same bytes. Every part is UTF-8, quoted-printable, with ``markers``
    turned into per-recipient slots.
    """
    lines = [*head, "MIME-Version: 1.0"]
    if len(parts) == 1:
        ((subtype, text),) = parts
        lines += [f"Content-Type: text/{subtype}; charset=utf-8",
                  "Content-Transfer-Encoding: quoted-printable"]  # fmt: skip
        body: list[Segment] = [CRLF, *encode_qp_with_slots(text, markers, subtype == "html")]
    else:
        boundary = f"=_{hashlib.sha256(key.encode()).hexdigest()[:24]}"
        lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
        body = [CRLF + b"This is a multi-part message in MIME format." + CRLF]
        for subtype, text in parts:
            body.append(
                f"--{boundary}\r\n"
                f"Content-Type: text/{subtype}; charset=utf-8\r\n"
                "Content-Transfer-Encoding: quoted-printable\r\n\r\n".encode()
            )
            body += encode_qp_with_slots(text, markers, subtype == "html")
            body.append(CRLF)
        body.append(f"--{boundary}--".encode() + CRLF)
    head_bytes = "".join(line + "\r\n" for line in lines).encode("ascii")
    return MessageTemplate(head_bytes, tuple(_merge(body)))


def _merge(segments: list[Segment]) -> list[Segment]:
    """Adjacent byte segments joined: fewer pieces to join per recipient."""
    out: list[Segment] = []
    for segment in segments:
        if isinstance(segment, bytes) and out and isinstance(out[-1], bytes):
            out[-1] = out[-1] + segment
        else:
            out.append(segment)
    return out
