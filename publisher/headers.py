"""Header values that cannot inject headers, whatever a title or a name contains.

Python 3.11.7's ``email`` package lets a crafted value smuggle a header in (CVE-2024-6923:
newlines survive folding, and RFC 2047 encoded words can carry an encoded newline). We
never hand raw text to it: every value is cleaned here first (control characters, line
separators and encoded-word look-alikes removed), and the header lines are written by us.
"""

from __future__ import annotations

import re
from email.header import Header
from email.utils import formataddr

from publisher.characters import HEADER_BREAKING
from publisher.errors import Problem, PublisherError

# The opening of an RFC 2047 encoded word: a decoder would turn what follows into other
# text (possibly a newline). Every "=?" becomes "= ?", which no decoder expands.
_ENCODED_WORD = re.compile(r"=\?")
# What we accept as an address: a conservative RFC 5321 mailbox (local@domain), no
# spaces, quotes, brackets or controls. Internationalised domains in their A-label form.
_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)


class InvalidAddress(PublisherError, ValueError):
    """An email address we will not put in a header."""


def clean_text(value: str, limit: int = 200) -> str:
    """One line of plain text, safe for a header: no controls, no line separators, no
    encoded words, whitespace folded, at most ``limit`` characters."""
    value = HEADER_BREAKING.sub(" ", value)
    value = _ENCODED_WORD.sub("= ?", value)  # no "=?": nothing a decoder could expand
    value = " ".join(value.split())
    return value[:limit]


def check_address(address: str, where: str = "address") -> str:
    if len(address) > 254 or not _ADDRESS.fullmatch(address):
        raise InvalidAddress([Problem("", None, where, f"{address!r} is not a valid address")])
    return address


def format_address(name: str, address: str) -> str:
    """``"Name" <address>`` with the name cleaned and, if not ASCII, RFC 2047 encoded."""
    check_address(address)
    name = clean_text(name, 100)
    if not name:
        return address
    return formataddr((name, address), charset="utf-8")


# "Display Name <local@domain>" or a bare "local@domain": one mailbox, nothing else. The
# name may be quoted; it may not hold angle brackets, controls or line separators.
_MAILBOX = re.compile(r'\s*(?:(?:"([^"<>]*)"|([^"<>]*?))\s*<([^<>]*)>|([^<>\s]+))\s*')


def parse_mailbox(value: str, where: str = "address") -> tuple[str, str]:
    """``"Name <a@b>"`` or ``a@b`` -> (name, address), refusing anything else.

    Not ``email.utils.parseaddr``: on this Python it reads ``Notes\r\nBcc: x@evil
    <news@example.org>`` as the address ``x@evil``, and it accepts lists of addresses.
    """
    if bad := HEADER_BREAKING.search(value):
        what = f"contains the control character U+{ord(bad.group()):04X}"
        raise InvalidAddress([Problem("", None, where, what)])
    match = _MAILBOX.fullmatch(value)
    if match is None:
        raise InvalidAddress(
            [Problem("", None, where, f"{value!r} is not one address ('Name <a@example.org>')")]
        )
    quoted, plain, inside, bare = match.groups()
    name = quoted if quoted is not None else plain or ""
    return clean_text(name, 100), check_address(inside if bare is None else bare, where)


def parse_sender(value: str) -> tuple[str, str]:
    """A From or Reply-To value from schedule.yaml -> (name, address), both checked."""
    return parse_mailbox(value, "from")


def encode_text(value: str) -> str:
    """A cleaned unstructured value (Subject) as header text: as is when ASCII, else
    RFC 2047 encoded words, folded with CRLF."""
    value = clean_text(value, 300)
    if value.isascii():
        return value
    return Header(value, "utf-8", header_name="Subject").encode(linesep="\r\n")
