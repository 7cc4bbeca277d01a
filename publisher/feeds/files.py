"""Entries -> feed files: the main feed and one per tag in every configured format,
written atomically, streamed from the build cache's fragments, untouched when unchanged.

A file whose inputs (its frame and the digests of its entries) are those of the last build
keeps its bytes and its mtime, for feed readers and HTTP caches. Feed files of tags that no
longer exist are removed (the manifest in the state folder says what an earlier build wrote).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from publisher.config import Publication
from publisher.content import slugify
from publisher.content.cache import BuildCache, Entry
from publisher.feeds.render import FILENAMES, SEPARATORS, Author, Channel, Format, feed_frame
from publisher.files import AtomicWriter, write_atomic

MANIFEST_FILE = "feeds-manifest.json"


@dataclass(frozen=True, slots=True)
class FeedFile:
    path: str
    format: str
    items: int
    written: bool
    url: str = ""  # where it is served
    archive: bool = False  # an RFC 5005 archive document, not a feed to subscribe to


def feed_author(pub: Publication) -> Author:
    author = pub.config.site.author
    return Author(author.name, author.email, author.uri)


def newest(entries: list[Entry], limit: int) -> list[Entry]:
    """The entries of one feed: newest first, at most ``limit`` (0: all)."""
    chosen = sorted(entries, key=lambda e: e.sort, reverse=True)
    return chosen[:limit] if limit else chosen


@dataclass
class _Feed:
    prefix: str
    channel: Channel
    entries: list[Entry]


def write_feeds(pub: Publication, cache: BuildCache, entries: list[Entry]) -> list[FeedFile]:
    """Write the main feed and the per-tag feeds in every configured format; remove feed
    files an earlier build wrote that are no longer produced (a tag that went away)."""
    config = pub.config
    site = config.site
    groups: list[tuple[str, str, list[Entry]]] = [("", site.title, entries)]
    for slug, (name, tagged) in sorted(_by_tag(pub, entries).items()):
        groups.append((f"tags/{slug}/", f"{site.title}: {name}", tagged))
    feeds: list[_Feed] = []
    for prefix, title, members in groups:
        feeds += _with_archives(pub, prefix, title, members)
    before = _read_manifest(pub)
    after: dict[str, dict[str, Any]] = {}
    written: list[FeedFile] = []
    for kind in config.feeds.formats:
        written.extend(_write_format(pub, cache, kind, feeds, before, after))
    _remove_stale(pub, before, after)
    return [
        FeedFile(_shown(pub.feeds_dir / f.path), f.format, f.items, f.written,
                 pub.feeds_url + f.path, "archive/" in f.path)
        for f in written
    ]  # fmt: skip


def _with_archives(pub: Publication, prefix: str, title: str, members: list[Entry]) -> list[_Feed]:
    """A feed, and its RFC 5005 archive documents when it holds fewer items than it has
    articles: every article, oldest first, ``archive_size`` to a document
    (``<prefix>archive/<n>/``). A full document keeps its articles for good; only the
    newest one grows until it is full."""
    config = pub.config
    site = config.site
    folder = pub.feeds_url + prefix

    def channel(feed_url: str, history: tuple[tuple[str, str], ...], archive: bool) -> Channel:
        return Channel(
            title=title, description=site.description, home_url=site.base_url,
            feed_url=feed_url, language=site.language, author=feed_author(pub),
            history=history, archive=archive, hubs=tuple(config.feeds.hubs),
        )  # fmt: skip

    items, size = config.feeds.items, config.feeds.archive_size
    if not size or not items or len(members) <= items:
        return [_Feed(prefix, channel(folder, (), False), newest(members, items))]
    oldest_first = sorted(members, key=lambda e: e.sort)
    chunks = [oldest_first[i : i + size] for i in range(0, len(oldest_first), size)]

    def archive(n: int) -> str:
        return f"{folder}archive/{n}/"

    feeds = [_Feed(prefix, channel(folder, (("prev-archive", archive(len(chunks))),), False),
                   newest(members, items))]  # fmt: skip
    for n, chunk in enumerate(chunks, 1):
        history = [("current", folder)]
        if n > 1:
            history.append(("prev-archive", archive(n - 1)))
        if n < len(chunks):
            history.append(("next-archive", archive(n + 1)))
        feeds.append(
            _Feed(f"{prefix}archive/{n}/", channel(archive(n), tuple(history), True),
                  newest(chunk, 0))
        )  # fmt: skip
    return feeds


def _write_format(
    pub: Publication,
    cache: BuildCache,
    kind: Format,
    feeds: list[_Feed],
    before: dict[str, dict[str, Any]],
    after: dict[str, dict[str, Any]],
) -> list[FeedFile]:
    """Every feed file of one format in a single pass over the cached fragments.

    A file whose inputs (its frame and the digests of its entries) are those of the last
    build, and which nobody touched since, is not written at all: its bytes, and so its
    mtime, stay as they are for feed readers and HTTP caches.
    """
    result: list[FeedFile] = []
    pending: list[tuple[_Feed, str, AtomicWriter, bytes, str]] = []
    members: dict[str, list[AtomicWriter]] = {}
    counts: dict[int, int] = {}
    separator = SEPARATORS[kind]
    try:
        for feed in feeds:
            relative = feed.prefix + FILENAMES[kind]
            target = pub.feeds_dir / relative
            updated = max((e.modified for e in feed.entries), default=None)
            head, tail = feed_frame(kind, feed.channel, updated)
            # Same frame and same entry digests: the same bytes as the file already holds.
            inputs = hashlib.sha256(head + tail)
            for entry in feed.entries:
                inputs.update(entry.digest)
            signature = inputs.hexdigest()
            old = before.get(relative)
            if old is not None and old["inputs"] == signature and _untouched(target, old):
                after[relative] = old
                result.append(FeedFile(relative, kind, len(feed.entries), False))
                continue
            writer = AtomicWriter(target)
            writer.write(head)
            pending.append((feed, relative, writer, tail, signature))
            for entry in feed.entries:
                members.setdefault(entry.path, []).append(writer)
        if members:
            for path, fragment in cache.fragments(kind, set(members)):
                for writer in members[path]:
                    if counts.get(id(writer)):
                        writer.write(separator)
                    writer.write(fragment)
                    counts[id(writer)] = counts.get(id(writer), 0) + 1
        for feed, relative, writer, tail, signature in pending:
            if counts.get(id(writer), 0) != len(feed.entries):
                raise RuntimeError(f"build cache is missing entries of {writer.path}")
            writer.write(tail)
            writer.commit()
            info = writer.path.stat()
            after[relative] = {
                "inputs": signature,
                "size": info.st_size,
                "mtime_ns": info.st_mtime_ns,
            }
            result.append(FeedFile(relative, kind, len(feed.entries), True))
        return result
    finally:
        for _, _, writer, _, _ in pending:
            writer.close()


def _untouched(target: Path, record: dict[str, Any]) -> bool:
    try:
        info = target.stat()
    except FileNotFoundError:
        return False
    return bool(info.st_size == record["size"] and info.st_mtime_ns == record["mtime_ns"])


def _shown(path: Path) -> str:
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def _by_tag(pub: Publication, entries: list[Entry]) -> dict[str, tuple[str, list[Entry]]]:
    """Entries per tag slug ("Open Source" and "open-source" are one feed), with the tag's
    name as first seen."""
    wanted = pub.config.feeds.tags
    if wanted == "none":
        return {}
    groups: dict[str, tuple[str, list[Entry]]] = {}
    if isinstance(wanted, list):
        # Listed tags get a feed even while empty, so their URLs never 404.
        for tag in wanted:
            groups.setdefault(slugify(tag), (tag, []))
    for entry in entries:
        for slug in dict.fromkeys(slugify(tag) for tag in entry.tags):
            if not slug:
                continue
            if wanted == "all":
                groups.setdefault(slug, (next(t for t in entry.tags if slugify(t) == slug), []))
            if slug in groups:
                groups[slug][1].append(entry)
    return groups


def _read_manifest(pub: Publication) -> dict[str, dict[str, Any]]:
    """What the last build wrote: per feed file, its inputs' signature, digest and stat."""
    try:
        data = json.loads((pub.state_dir / MANIFEST_FILE).read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError:
        return {}  # a damaged manifest only costs rewriting every feed once
    files = data.get("files") if isinstance(data, dict) else None
    return files if isinstance(files, dict) else {}


def _remove_stale(
    pub: Publication, before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
) -> None:
    for relative in before:
        if relative in after or ".." in Path(relative).parts:
            continue
        target = pub.feeds_dir / relative
        target.unlink(missing_ok=True)
        parent = target.parent
        while parent != pub.feeds_dir and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    manifest = {"version": 1, "files": dict(sorted(after.items()))}
    write_atomic(pub.state_dir / MANIFEST_FILE, json.dumps(manifest, indent=1).encode())
