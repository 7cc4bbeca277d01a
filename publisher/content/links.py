"""The one rule for relative paths in an article: they resolve against the article's own
folder (a path starting with ``/`` against the publication's), in the body as in the front
matter. What such a path leads to decides what becomes of it:

* another article's source file (``other.md``): that article's permalink;
* any other file of the publication (an image, a PDF): published with the site at the
  same path below the site's URL, so the article carries it in ``files`` (a file the
  build writes, such as a feed, is linked to and not copied);
* nothing: the link stays, and a ``path:line:`` warning says so.

Absolute URLs, ``mailto:`` and fragments are the author's business and left alone.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from publisher.config import Publication
from publisher.content import SUFFIXES, slugify
from publisher.errors import Problem

# The attributes the sanitizer keeps that hold a URL.
_URL_ATTRIBUTES = {("a", "href"), ("img", "src")}
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
# The href and src values of a and img tags, found by a regular expression anchored on
# the tag (scanning for "href" at every position cost ten times as much): most articles
# have no relative one, and then the HTML is not parsed at all (parsing cost 0.4 ms an
# article, a fifth of reading one). The parser decides for those that have.
_URLS = re.compile(r"""<(?:a|img)\s[^>]*?(?:href|src)\s*=\s*["']?\s*([^"'\s>]*)""", re.I)


@dataclass
class References:
    """What the relative paths of one article lead to."""

    # The URL as the sanitizer made it absolute (against the article's folder) -> the
    # permalink of the article it names.
    articles: dict[str, str] = field(default_factory=dict)
    # The source of each article it names (publication-relative) -> the permalink used:
    # the build reads the article again when that permalink changes.
    sources: dict[str, str] = field(default_factory=dict)
    # Files of the publication it references, relative to the publication folder (posix).
    files: list[str] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if (tag, name) in _URL_ATTRIBUTES and value:
                self.found.append(value.strip())


def folder_url(pub: Publication, source: Path) -> str:
    """The URL relative paths of the article at ``source`` resolve against: its folder's
    place below the site's URL."""
    base = pub.config.site.base_url
    key = (pub.root, base, str(source.parent))
    url = _FOLDER_URLS.get(key)
    if url is not None:  # 10,000 articles share a handful of folders
        return url
    try:  # the usual case, from the names alone (so it can be kept), without resolving
        folder: PurePosixPath | None = PurePosixPath(source.parent.relative_to(pub.root).as_posix())
    except ValueError:
        folder = _inside(pub, source.parent)  # through links on disk: looked up each time
        return base if folder in (None, PurePosixPath(".")) else f"{base}{folder.as_posix()}/"
    if len(_FOLDER_URLS) >= 4096:
        _FOLDER_URLS.clear()
    url = _FOLDER_URLS[key] = base if folder == PurePosixPath(".") else f"{base}{folder}/"
    return url


_FOLDER_URLS: dict[tuple[Path, str, str], str] = {}


def resolve_references(
    pub: Publication, source: Path, shown: str, fragment: str, text: str, first_line: int
) -> References:
    """The relative references of ``fragment`` (an article's HTML before sanitizing),
    resolved by the rule above. ``text`` and ``first_line``: the source text they were
    written in and its first line, for the line of a warning."""
    found = References()
    if not any(value and _relative(value) for value in _URLS.findall(fragment)):
        return found
    parser = _Collect()
    parser.feed(fragment)
    parser.close()
    base = folder_url(pub, source)
    seen: set[str] = set()
    for value in parser.found:
        if value in seen or not _relative(value):
            continue
        seen.add(value)
        path = unquote(urlsplit(value).path)
        if not path:
            continue
        target = _target(pub, source, path)
        if target is None:
            outside = _missing(shown, text, first_line, value, "is outside the publication")
            found.warnings.append(outside)
            continue
        file = pub.root / target
        if any(_under(file, made) for made in (pub.feeds_dir, pub.site_dir, pub.state_dir)):
            continue  # what a build makes (a feed, a page): there, and not copied
        if file.suffix.lower() in SUFFIXES and _under(file, pub.articles_dir) and file.is_file():
            permalink = _permalink(pub, file)
            found.articles[_absolute(base, value)] = permalink
            found.sources[target.as_posix()] = permalink
        elif file.is_file():
            if target.as_posix() not in found.files:
                found.files.append(target.as_posix())
        elif not path.startswith("/"):
            # (A path from the site's root may name one of its pages, not a file.)
            found.warnings.append(_missing(shown, text, first_line, value, "does not exist"))
    return found


def rewrite_article_links(fragment: str, articles: dict[str, str]) -> str:
    """``fragment`` (sanitized) with each link to another article's source file pointing
    at that article's permalink (its fragment, if any, kept)."""
    for absolute, permalink in articles.items():
        escaped = html.escape(absolute, quote=True)
        to = html.escape(permalink, quote=True)

        def point(match: re.Match[str], to: str = to) -> str:
            return f'href="{to}{match.group(1) or ""}"'

        fragment = re.sub(r'href="' + re.escape(escaped) + r'(#[^"]*)?"', point, fragment)
    return fragment


def published_file(pub: Publication, source: Path, src: str) -> str | None:
    """A front-matter path (``image: images/x.png``), resolved by the same rule: the
    publication-relative path of the file, or None when it is outside the publication."""
    target = _target(pub, source, src)
    return None if target is None else target.as_posix()


def _relative(value: str) -> bool:
    return not (_SCHEME.match(value) or value.startswith(("//", "#", "?")))


def _target(pub: Publication, source: Path, path: str) -> PurePosixPath | None:
    """Where ``path`` (as written in the article at ``source``) leads, relative to the
    publication folder; None when that is outside it."""
    start = pub.root if path.startswith("/") else source.parent
    resolved = (start / path.lstrip("/")).resolve()
    return _inside(pub, resolved)


def _inside(pub: Publication, path: Path) -> PurePosixPath | None:
    try:
        return PurePosixPath(path.resolve().relative_to(pub.root.resolve()).as_posix())
    except ValueError:
        return None


def _under(file: Path, folder: Path) -> bool:
    try:
        file.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _absolute(base: str, value: str) -> str:
    """``value`` made absolute as the sanitizer makes it (against ``base``), without its
    fragment."""
    from urllib.parse import urljoin

    return urljoin(base, value).split("#", 1)[0]


def _permalink(pub: Publication, file: Path) -> str:
    """Where the article in ``file`` is read: its own ``link:``, else the permalink of its
    ``slug:`` or of its name's slug (as the reader decides; read from its front matter
    only)."""
    from publisher.content.frontmatter import split_front_matter
    from publisher.errors import PublisherError

    slug = slugify(file.stem)
    try:
        meta = split_front_matter(file.read_text("utf-8"), file.name).meta
    except (OSError, UnicodeDecodeError, PublisherError):
        meta = None
    if meta is not None and meta.link:
        return meta.link
    site = pub.config.site
    if meta is not None and meta.slug:
        slug = meta.slug
    return site.base_url + site.permalink.format(slug=slug)


def _missing(shown: str, text: str, first_line: int, value: str, what: str) -> Problem:
    at = text.find(value)
    line = first_line + text.count("\n", 0, at) if at >= 0 else first_line
    return Problem(shown, line, "link", f"'{value}' {what}")
