"""Which characters may stand where: one rule for the whole package.

XML 1.0 §2.2 forbids C0 controls other than TAB, LF, CR, surrogates and U+FFFE/U+FFFF;
it discourages DEL, the C1 controls and the other noncharacters (U+FDD0-FDEF and the last
two code points of every plane), which the W3C validator reports as BadCharacters. So it
does U+FFFD, the replacement character: it marks a character already lost (the sanitizer
makes it of ``&#0;`` and of references to surrogates). None of them belongs in an article,
a feed, a page, a mail or schedule.yaml.

A header line is broken by more than that: TAB, CR and LF, and U+2028/U+2029 and U+FEFF,
which some mail software also reads as line ends or strips.
"""

from __future__ import annotations

import re

_NONCHARACTERS = "".join(
    f"{chr(plane * 0x10000 + 0xFFFE)}{chr(plane * 0x10000 + 0xFFFF)}" for plane in range(17)
)
_FORBIDDEN_CLASS = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffd" + (
    _NONCHARACTERS
)
FORBIDDEN = re.compile(f"[{_FORBIDDEN_CLASS}]")
HEADER_BREAKING = re.compile(f"[{_FORBIDDEN_CLASS}\t\n\r\u2028\u2029\ufeff]")

# A quick look at the UTF-8 bytes settles almost every text without the expression above
# (which costs ~100 µs on a 6 KB article): no C0 control or DEL byte, and none of the lead
# bytes with which the other forbidden characters start (C1: C2; surrogates: ED;
# noncharacters and U+FFFD: EF, F0-F4).
# (One pass of ``bytes.translate`` deleting all of them: a text that keeps its length has none.)
_SUSPECT_BYTES = bytes(
    [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, 0xC2, 0xED, 0xEF, *range(0xF0, 0xF5)]
)


def strip_forbidden(text: str) -> tuple[str, int, int | None]:
    """Return the text without forbidden characters, how many were removed, and the
    (1-based) line of the first one."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data.translate(None, _SUSPECT_BYTES)) == len(data):
        return text, 0, None
    first = FORBIDDEN.search(text)
    if first is None:
        return text, 0, None
    line = text.count("\n", 0, first.start()) + 1
    cleaned, count = FORBIDDEN.subn("", text)
    return cleaned, count, line
