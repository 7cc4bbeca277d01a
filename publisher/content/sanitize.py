"""Make untrusted article text safe for XML feeds and HTML email.

Two separate jobs: characters XML 1.0 cannot carry at all (removed, with a count so the
caller can warn), and HTML that must not reach a reader (scripts, event handlers,
``javascript:`` links), which an allow-list sanitizer (ammonia, via nh3) removes.
"""

from __future__ import annotations

import re

import nh3

# XML 1.0 §2.2 forbids C0 controls other than TAB, LF, CR, surrogates and U+FFFE/U+FFFF;
# it discourages DEL, the C1 controls and the other noncharacters, which the W3C validator
# reports as BadCharacters. So it does U+FFFD, the replacement character: it marks a
# character already lost (the sanitizer makes it of `&#0;` and of references to
# surrogates). None of them has any business in an article.
_FORBIDDEN = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffd\ufffe\uffff"
    "\U0001fffe\U0001ffff\U0010fffe\U0010ffff]"
)


# A quick look at the UTF-8 bytes settles almost every text without the regex above (which
# costs ~100 µs on a 6 KB article): no C0 control or DEL byte, and none of the lead bytes
# with which the other forbidden characters start (C1: C2; surrogates: ED; noncharacters:
# EF, F0-F4).
_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_SUSPECT_LEADS = (b"\xc2", b"\xed", b"\xef", b"\xf0", b"\xf1", b"\xf2", b"\xf3", b"\xf4")


def strip_forbidden(text: str) -> tuple[str, int, int | None]:
    """Return the text without forbidden characters, how many were removed, and the
    (1-based) line of the first one."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data.translate(None, _CONTROL_BYTES)) == len(data) and not any(
        lead in data for lead in _SUSPECT_LEADS
    ):
        return text, 0, None
    first = _FORBIDDEN.search(text)
    if first is None:
        return text, 0, None
    line = text.count("\n", 0, first.start()) + 1
    cleaned, count = _FORBIDDEN.subn("", text)
    return cleaned, count, line


_TAGS = (nh3.ALLOWED_TAGS - {"area", "map", "center", "acronym", "strike", "tt"}) | {"picture"}
_ATTRIBUTES: dict[str, set[str]] = {
    "*": {"lang", "dir", "title"},
    "a": {"href", "hreflang"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan", "align", "style"},
    "th": {"colspan", "rowspan", "align", "scope", "style"},
    "col": {"span"},
    "ol": {"start", "reversed"},
    "time": {"datetime"},
    "abbr": {"title"},
    "blockquote": {"cite"},
    "q": {"cite"},
}
_SCHEMES = {"http", "https", "mailto"}


def sanitize_html(html: str, base_url: str) -> tuple[str, int]:
    """Keep only allow-listed tags and attributes; make every link absolute. Returns the
    HTML and how many characters XML forbids were removed from it.

    Feed readers and mail clients resolve relative links against nothing useful, so
    ``href="/about"`` becomes ``href="https://example.org/about"``. The forbidden
    characters are removed from the *output*: the sanitizer (like Markdown before it)
    decodes character references, so ``&#1;`` or ``&#xFFFE;`` in clean source text
    arrive here as the raw characters, which no XML feed can carry.
    """
    cleaned: str = nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes=_SCHEMES,
        url_relative=("rewrite_with_base", base_url),
        link_rel="noopener",
        strip_comments=True,
        # Table cells keep their alignment (Markdown writes it as a style) and nothing else.
        filter_style_properties={"text-align"},
    )
    cleaned, removed, _ = strip_forbidden(cleaned)
    return cleaned, removed
