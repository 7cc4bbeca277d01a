"""Entries -> the site folder: every page written atomically, untouched when unchanged,
the files the articles reference copied beside them, and what an earlier build wrote and
this one did not (a deleted article, a tag gone, a page of paging fewer) removed.

Like the feeds: a page whose inputs (the templates and settings, and the digests of its
articles) are those of the last build, and which nobody touched since, is not rendered at
all. The manifest in the state folder says what each file was made from.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from publisher.config import Publication
from publisher.content import slugify
from publisher.content.cache import BuildCache, Entry
from publisher.files import write_atomic
from publisher.site.render import Listing, SiteRenderer

MANIFEST_FILE = "site-manifest.json"


@dataclass(frozen=True)
class SiteReport:
    pages: int  # pages the site has
    written: int  # pages rendered and written by this build
    files: int  # referenced files published
    copied: int  # of which copied by this build
    removed: int  # files of an earlier build removed


def page_path(pub: Publication, link: str) -> str | None:
    """Where the page at ``link`` lives below the site folder (``articles/x/index.html``),
    or None when the link is not on this site (an article's own ``link:``)."""
    base = pub.config.site.base_url
    if not link.startswith(base):
        return None
    relative = link[len(base) :].split("#", 1)[0].split("?", 1)[0]
    if ".." in relative.split("/"):
        return None
    return relative + "index.html" if relative == "" or relative.endswith("/") else relative


def write_site(pub: Publication, cache: BuildCache, entries: list[Entry]) -> SiteReport:
    renderer = SiteRenderer(pub)
    frame = renderer.fingerprint()
    before = _read_manifest(pub)
    after: dict[str, dict[str, Any]] = {}
    ordered = sorted(entries, key=lambda e: e.sort, reverse=True)
    written = 0

    # Article pages: the record is read from the cache only for a page to render.
    for entry in ordered:
        target = page_path(pub, entry.link)
        if target is None or target in after:
            continue  # a page elsewhere, or a permalink another article has
        signature = _signature(frame, b"article", entry.digest)
        old = before.get(target)
        if old is not None and old.get("inputs") == signature and _untouched(pub, target, old):
            after[target] = old
            continue
        record = cache.records("page", [entry.path]).get(entry.path)
        if record is None:
            raise RuntimeError(f"build cache has no page of {entry.path}")
        after[target] = _written(pub, target, renderer.article(orjson.loads(record)), signature)
        written += 1

    # The front page and the tags' pages, paged.
    lists: list[tuple[str, str | None, list[Entry]]] = [("", None, ordered)]
    for slug, (name, tagged) in sorted(_by_tag(ordered).items()):
        lists.append((f"tags/{slug}/", name, tagged))
    per_page = pub.config.website.per_page
    for prefix, tag, members in lists:
        chunks = [members[i : i + per_page] for i in range(0, len(members), per_page)] or [[]]
        for number, chunk in enumerate(chunks, 1):
            listing = _listing(pub, prefix, number, len(chunks))
            signature = _signature(
                frame, f"list\0{prefix}\0{tag}\0{number}\0{len(chunks)}".encode(),
                *(e.digest for e in chunk),
            )  # fmt: skip
            old = before.get(listing.path)
            if (
                old is not None
                and old.get("inputs") == signature
                and _untouched(pub, listing.path, old)
            ):
                after[listing.path] = old
                continue
            shown = cache.records("page", [e.path for e in chunk])
            data = renderer.listing([orjson.loads(shown[e.path]) for e in chunk], listing, tag)
            after[listing.path] = _written(pub, listing.path, data, signature)
            written += 1
    pages = len(after)

    # The files the articles reference, at their own path below the site.
    copied = 0
    files = 0
    for entry in ordered:
        for relative in entry.files:
            if relative in after or ".." in Path(relative).parts:
                continue
            source = pub.root / relative
            try:
                info = source.stat()
            except OSError:
                continue  # gone since the article was read: the next build says so
            stamp = {"size": info.st_size, "source_mtime_ns": info.st_mtime_ns}
            old = before.get(relative)
            files += 1
            if old is not None and _same_source(old, stamp) and _untouched(pub, relative, old):
                after[relative] = old
                continue
            copy = pub.site_dir / relative
            copy.parent.mkdir(parents=True, exist_ok=True)
            temporary = copy.with_name(f".{copy.name}.tmp")
            shutil.copyfile(source, temporary)
            os.replace(temporary, copy)
            stat = copy.stat()
            after[relative] = {**stamp, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
            copied += 1
    removed = _remove_stale(pub, before, after)
    return SiteReport(pages, written, files, copied, removed)


def _listing(pub: Publication, prefix: str, number: int, pages: int) -> Listing:
    base = pub.config.site.base_url + prefix

    def url(n: int) -> str:
        return base if n == 1 else f"{base}page/{n}/"

    path = f"{prefix}index.html" if number == 1 else f"{prefix}page/{number}/index.html"
    return Listing(
        path, url(number), number, pages,
        newer=url(number - 1) if number > 1 else None,
        older=url(number + 1) if number < pages else None,
    )  # fmt: skip


def _by_tag(entries: list[Entry]) -> dict[str, tuple[str, list[Entry]]]:
    """Entries per tag slug ("Open Source" and "open-source" are one page), with the
    tag's name as first seen (newest first)."""
    groups: dict[str, tuple[str, list[Entry]]] = {}
    for entry in entries:
        for tag in entry.tags:
            slug = slugify(tag)
            if slug:
                group = groups.setdefault(slug, (tag, []))
                if not group[1] or group[1][-1] is not entry:
                    group[1].append(entry)
    return groups


def _signature(frame: bytes, kind: bytes, *digests: bytes) -> str:
    inputs = hashlib.sha256(frame + b"\0" + kind)
    for digest in digests:
        inputs.update(digest)
    return inputs.hexdigest()


def _written(pub: Publication, relative: str, data: bytes, signature: str) -> dict[str, Any]:
    target = pub.site_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, data)
    info = target.stat()
    return {"inputs": signature, "size": info.st_size, "mtime_ns": info.st_mtime_ns}


def _untouched(pub: Publication, relative: str, record: dict[str, Any]) -> bool:
    try:
        info = (pub.site_dir / relative).stat()
    except OSError:
        return False
    return bool(info.st_size == record.get("size") and info.st_mtime_ns == record.get("mtime_ns"))


def _same_source(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return bool(old.get("source_mtime_ns") == new["source_mtime_ns"])


def _read_manifest(pub: Publication) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((pub.state_dir / MANIFEST_FILE).read_text("utf-8"))
    except (FileNotFoundError, ValueError):
        return {}  # none, or damaged: every page is written once
    files = data.get("files") if isinstance(data, dict) else None
    return files if isinstance(files, dict) else {}


def _remove_stale(
    pub: Publication, before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
) -> int:
    removed = 0
    root = pub.site_dir
    for relative in before:
        if relative in after or ".." in Path(relative).parts:
            continue
        target = root / relative
        if target.is_file():
            target.unlink()
            removed += 1
        parent = target.parent
        while parent != root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    pub.state_dir.mkdir(parents=True, exist_ok=True)
    manifest = {"version": 1, "files": dict(sorted(after.items()))}
    write_atomic(pub.state_dir / MANIFEST_FILE, json.dumps(manifest, indent=1).encode())
    return removed
