"""Articles -> RSS 2.0, Atom 1.0 (both written by feedgen) and JSON Feed 1.1 bytes.

Pure: data in, bytes out; no clock and no files. Each entry is rendered once into a
fragment per format (``render_entry``) and a feed is its head plus the fragments
(``render_feed``). The fragments are what the incremental build caches, so a rebuild after
one article changed renders one entry, not ten thousand.

Determinism: a feed's ``updated``/``lastBuildDate`` is the newest entry's modification
time, never "now", so the same articles give the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from feedgen.entry import FeedEntry
from feedgen.feed import FeedGenerator
from lxml import etree

from publisher import __version__
from publisher.config import ALL_FORMATS, FeedFormat
from publisher.content import plain_text
from publisher.model import Article

# The one table of the feed formats: schedule.yaml names them (config), the build writes
# them, the web side serves and announces them from here.
Format = FeedFormat
FILENAMES: dict[Format, str] = {"rss": "rss.xml", "atom": "atom.xml", "json": "feed.json"}
MEDIA_TYPES: dict[Format, str] = {
    "rss": "application/rss+xml",
    "atom": "application/atom+xml",
    "json": "application/feed+json",
}
LABELS: dict[Format, str] = {"rss": "RSS", "atom": "Atom", "json": "JSON Feed"}
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
# What an empty feed says it was updated: a fixed moment, so an empty build is repeatable.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CONTENT_NS = "http://purl.org/rss/1.0/modules/content/"
HISTORY_NS = "http://purl.org/syndication/history/1.0"  # RFC 5005
_NS0_OPEN = b'<ns0:encoded xmlns:ns0="' + _CONTENT_NS.encode() + b'">'


@dataclass(frozen=True, slots=True)
class Author:
    name: str
    email: str | None = None
    uri: str | None = None


@dataclass(frozen=True, slots=True)
class Channel:
    """What a feed says about itself."""

    title: str
    description: str
    home_url: str
    feed_url: str  # the folder this feed's files are served from, ending in '/'
    language: str
    author: Author
    # RFC 5005 feed history: (relation, folder of that feed) for "current", "prev-archive"
    # and "next-archive"; ``archive``: this document is an archive (``fh:archive``).
    history: tuple[tuple[str, str], ...] = ()
    archive: bool = False
    hubs: tuple[str, ...] = ()  # WebSub hubs (rel="hub")


@dataclass(frozen=True, slots=True)
class EntryFragments:
    """One article's item/entry, rendered once per format."""

    rss: bytes
    atom: bytes
    json: bytes

    def get(self, kind: Format) -> bytes:
        return self.rss if kind == "rss" else self.atom if kind == "atom" else self.json


def render_entry(
    article: Article, full: bool, author: Author, formats: Collection[Format] = ALL_FORMATS
) -> EntryFragments:
    """Render one article's item/entry for each of ``formats`` (a format left out is
    empty: a publication without Atom pays nothing for it)."""
    entry = FeedEntry()
    # Ids come from the permalink, never the title: retitling must not duplicate an item.
    entry.id(article.link)
    entry.guid(article.link, permalink=True)
    entry.title(article.title)
    entry.link(href=article.link, rel="alternate")
    entry.published(article.date)
    entry.updated(article.modified)
    entry.pubDate(article.date)
    name = article.author or author.name
    # The site's address belongs to the site's name, not to a guest author.
    email = author.email if article.author is None else None
    entry.author({"name": name, **({"email": email} if email else {})})
    for tag in article.tags:
        entry.category(term=tag, label=tag)
    summary = article.summary_html or article.title
    # summary() fills Atom <summary> and RSS <description>; content() Atom <content> and
    # RSS <content:encoded>. (description() would overwrite Atom <content>: not used.)
    entry.summary(summary, type="html")
    if full:
        entry.content(article.body_html or summary, type="html")
    if article.image is not None:
        entry.enclosure(article.image.url, str(article.image.length), article.image.type)

    atom = rss = b""
    if "atom" in formats:
        atom_entry = entry.atom_entry()
        _fix_atom_links(atom_entry, article)
        atom = _serialize(atom_entry, 1)
    if "rss" in formats:
        rss_item = entry.rss_entry()
        if not email:
            # RSS <author> must be an email address; without one it is left out (the
            # channel and the Atom feed still name the author).
            for element in rss_item.findall("author"):
                rss_item.remove(element)
        rss = _serialize_item(rss_item)
    json = _json_item(article, full, name) if "json" in formats else b""
    return EntryFragments(rss=rss, atom=atom, json=json)


def _fix_atom_links(atom: Any, article: Article) -> None:
    # feedgen 1.0 drops rel/type/length of every Atom entry link (lkiesow/python-feedgen#135:
    # the loop variable shadows the link dict), so an enclosure would turn into a second
    # rel="alternate" link, which makes the entry invalid. Rewrite the links ourselves.
    links = atom.findall("link")
    position = list(atom).index(links[0]) if links else len(atom)
    for link in links:
        atom.remove(link)
    wanted = [{"rel": "alternate", "type": "text/html", "href": article.link}]
    if article.image is not None:
        enclosure = {"rel": "enclosure", "type": article.image.type, "href": article.image.url}
        if article.image.length:
            enclosure["length"] = str(article.image.length)
        wanted.append(enclosure)
    for offset, attributes in enumerate(wanted):
        element = etree.Element("link", attrib=attributes)
        atom.insert(position + offset, element)


def _serialize_item(item: Any) -> bytes:
    # feedgen creates <content:encoded> outside any tree, so lxml names its namespace
    # "ns0" and declares it on the element. The channel declares content: once; use it.
    text = _serialize(item, 2)
    return text.replace(_NS0_OPEN, b"<content:encoded>", 1).replace(
        b"</ns0:encoded>", b"</content:encoded>", 1
    )


def _serialize(element: Any, level: int) -> bytes:
    etree.indent(element, space="  ", level=level)
    element.tail = "\n"
    return b"  " * level + etree.tostring(element, encoding="utf-8", with_tail=True)


def _json_item(article: Article, full: bool, author_name: str) -> bytes:
    item: dict[str, Any] = {"id": article.link, "url": article.link, "title": article.title}
    if full:
        item["content_html"] = article.body_html or article.summary_html
    else:
        item["content_html"] = article.summary_html
    item["summary"] = plain_text(article.summary_html)
    if article.image is not None:
        item["image"] = article.image.url
    item["date_published"] = article.date.isoformat()
    if article.updated is not None:
        item["date_modified"] = article.updated.isoformat()
    item["authors"] = [{"name": author_name}]
    if article.tags:
        item["tags"] = list(article.tags)
    return orjson.dumps(item)  # ~6x faster than json on HTML-heavy items


def feed_frame(kind: Format, channel: Channel, updated: datetime | None) -> tuple[bytes, bytes]:
    """What a feed file holds before and after its entries. ``updated`` is the newest
    entry's modification time (None for an empty feed)."""
    updated = updated or EPOCH
    if kind == "json":
        return _json_frame(channel)
    generator = FeedGenerator()
    self_url = channel.feed_url + FILENAMES[kind]
    generator.id(self_url)
    generator.title(channel.title)
    generator.description(channel.description or channel.title)
    generator.subtitle(channel.description or channel.title)
    # RSS has one <link>: feedgen takes the last one given, which must be the site's.
    generator.link(href=self_url, rel="self", type=MEDIA_TYPES[kind])
    generator.link(href=channel.home_url, rel="alternate")
    generator.language(channel.language)
    author: dict[str, str] = {"name": channel.author.name}
    if channel.author.email:
        author["email"] = channel.author.email
    if channel.author.uri:
        author["uri"] = channel.author.uri
    generator.author(author)
    generator.updated(updated)
    generator.lastBuildDate(updated)
    generator.generator("publisher", version=__version__, uri=None)
    if kind == "rss":
        head, tail = _cut(generator.rss_str(pretty=True), b"</channel>")
        return _with_history(head, channel, kind, b"<rss ", b"<channel>\n", b"    ", b"atom:"), tail
    head, tail = _cut(generator.atom_str(pretty=True), b"</feed>")
    return _with_history(head, channel, kind, b"<feed ", b"</id>\n", b"  ", b""), tail


def _with_history(
    head: bytes,
    channel: Channel,
    kind: Format,
    root: bytes,
    after: bytes,
    indent: bytes,
    prefix: bytes,
) -> bytes:
    """The feed's WebSub hubs and RFC 5005 links (and ``fh:archive`` in an archive
    document), written into feedgen's output: feedgen knows no history relations, and in
    RSS it would take any link given for the channel's own ``<link>``."""
    if not channel.history and not channel.archive and not channel.hubs:
        return head
    tag = indent + b"<" + prefix + b'link href="'
    lines = b"".join(tag + _attribute(hub) + b'" rel="hub"/>\n' for hub in channel.hubs)
    for relation, folder in channel.history:
        lines += tag + _attribute(folder + FILENAMES[kind]) + b'" rel="' + relation.encode()
        lines += b'" type="' + MEDIA_TYPES[kind].encode() + b'"/>\n'
    if channel.archive:
        lines += indent + b"<fh:archive/>\n"
        head = head.replace(root, root + b'xmlns:fh="' + HISTORY_NS.encode() + b'" ', 1)
    at = head.index(after) + len(after)
    return head[:at] + lines + head[at:]


def _attribute(text: str) -> bytes:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").encode()


# Between two entries of one feed file.
SEPARATORS: dict[Format, bytes] = {"rss": b"", "atom": b"", "json": b",\n"}


def render_feed(
    kind: Format, channel: Channel, entries: list[EntryFragments], updated: datetime | None
) -> bytes:
    """A whole feed in memory (the build streams the same parts into the file instead)."""
    head, tail = feed_frame(kind, channel, updated)
    return head + SEPARATORS[kind].join(e.get(kind) for e in entries) + tail


def _cut(document: bytes, closing: bytes) -> tuple[bytes, bytes]:
    cut = document.rindex(closing)
    start = document.rindex(b"\n", 0, cut) + 1  # keep the closing tag's own indentation
    return document[:start], document[start:]


def _json_frame(channel: Channel) -> tuple[bytes, bytes]:
    head: dict[str, Any] = {
        "version": JSON_FEED_VERSION,
        "title": channel.title,
        "home_page_url": channel.home_url,
        "feed_url": channel.feed_url + FILENAMES["json"],
        "language": channel.language,
        "authors": [
            {
                "name": channel.author.name,
                **({"url": channel.author.uri} if channel.author.uri else {}),
            }
        ],
    }
    if channel.description:
        head["description"] = channel.description
    # JSON Feed's paging: next_url leads to the older items (the history's prev-archive).
    older = dict(channel.history).get("prev-archive")
    if older is not None:
        head["next_url"] = older + FILENAMES["json"]
    if channel.hubs:
        head["hubs"] = [{"type": "WebSub", "url": hub} for hub in channel.hubs]
    text = json.dumps(head, ensure_ascii=False, indent=2)
    # One item per line keeps the file diffable without paying for indenting megabytes.
    return text[:-2].encode("utf-8") + b',\n  "items": [\n', b"\n  ]\n}\n"
