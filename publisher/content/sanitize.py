"""Make untrusted article text safe for XML feeds and HTML email.

Two separate jobs: characters XML 1.0 cannot carry at all (removed, with a count so the
caller can warn; the rule is ``publisher.characters``), and HTML that must not reach a
reader (scripts, event handlers, ``javascript:`` links), which an allow-list sanitizer
(ammonia, via nh3) removes.
"""

from __future__ import annotations

import nh3

from publisher.characters import strip_forbidden

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
# A cleaner per base URL (an article folder's), built once: building ammonia's settings
# from these sets for every article was a third of sanitizing it.
_CLEANERS: dict[str, nh3.Cleaner] = {}
_MAX_CLEANERS = 1024  # a publication with more folders than this builds again, bounded


def _cleaner(base_url: str) -> nh3.Cleaner:
    cleaner = _CLEANERS.get(base_url)
    if cleaner is None:
        if len(_CLEANERS) >= _MAX_CLEANERS:
            _CLEANERS.clear()
        cleaner = _CLEANERS[base_url] = nh3.Cleaner(
            tags=_TAGS,
            attributes=_ATTRIBUTES,
            url_schemes=_SCHEMES,
            url_relative=("rewrite_with_base", base_url),
            link_rel="noopener",
            strip_comments=True,
            # Table cells keep their alignment (Markdown writes it as a style), nothing else.
            filter_style_properties={"text-align"},
        )
    return cleaner


def sanitize_html(html: str, base_url: str) -> tuple[str, int]:
    """Keep only allow-listed tags and attributes; make every link absolute. Returns the
    HTML and how many characters XML forbids were removed from it.

    Feed readers and mail clients resolve relative links against nothing useful, so
    ``href="/about"`` becomes ``href="https://example.org/about"``. The forbidden
    characters are removed from the *output*: the sanitizer (like Markdown before it)
    decodes character references, so ``&#1;`` or ``&#xFFFE;`` in clean source text
    arrive here as the raw characters, which no XML feed can carry.
    """
    cleaned: str = _cleaner(base_url).clean(html)
    cleaned, removed, _ = strip_forbidden(cleaned)
    return cleaned, removed
