"""Entries -> the site folder: every page written atomically, untouched when unchanged,
the files the articles reference copied beside them, and what an earlier build wrote and
this one did not (a deleted article, a tag gone, a page of paging fewer) removed.

Like the feeds: a page whose inputs (the templates and settings, and the digests of its
articles) are those of the last build, and which nobody touched since, is not rendered at
all. The manifest in the state folder says what each file was made from.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from publisher.config import Publication
from publisher.content import slugify
from publisher.content.cache import BuildCache, Entry
from publisher.content.catalog import page_fields
from publisher.digest.templates import TemplateError
from publisher.errors import Problem
from publisher.files import replace_small, write_atomic
from publisher.model import Article
from publisher.site.render import Listing, SiteRenderer

MANIFEST_FILE = "site-manifest.json"


@dataclass(frozen=True)
class SiteReport:
    pages: int  # pages the site has
    written: int  # pages rendered and written by this build
    files: int  # referenced files published
    copied: int  # of which copied by this build
    removed: int  # files of an earlier build removed
    warnings: list[Problem] = field(default_factory=list)  # pages two articles claim


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


# A page to render and write: (page below the site folder, its inputs' signature, the
# entries it shows, and for a list page its place and tag).
Task = tuple[str, str, list[str], "Listing | None", "str | None"]
# Below this many pages to render, starting worker processes costs more than it saves.
PARALLEL_FROM = 64


class ArticlePages:
    """Writes the page of each article while its reader has it in hand: made once a
    build (its renderer, with the templates as they are then, lives as long as it) and
    handed to the reading worker processes, each of which makes its own renderer."""

    def __init__(self) -> None:
        self._held: tuple[Publication, SiteRenderer, bytes, set[str]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"_held": None}  # a worker process makes its own renderer

    def __call__(
        self, pub: Publication, articles: list[tuple[Article, bytes]]
    ) -> list[tuple[str, dict[str, Any]] | None]:
        """Write the page of each of ``articles`` (published, with its entry digest): for
        each, (its path below the site, its manifest record), or None when its page is not
        on this site. ``write_site`` then takes it as written, once it knows the page is
        this article's (see ``_page_owners``). All are rendered, then all written: each
        step stays in the processor's caches from one page to the next."""
        if self._held is None or self._held[0] is not pub:
            renderer = SiteRenderer(pub)
            self._held = (pub, renderer, renderer.fingerprint(), set())
        _, renderer, frame, folders = self._held
        # A failure is not the article's problem, nor a reason to stop reading the others:
        # the site's own pass meets it again, after the feeds are written, and reports it.
        rendered: list[tuple[str, bytes, str] | None] = []
        for article, digest in articles:
            target = page_path(pub, article.link)
            try:
                data = None if target is None else renderer.article(page_fields(article))
            except (TemplateError, OSError):
                data = None
            signature = _signature(frame, b"article", digest)
            rendered.append(None if target is None or data is None else (target, data, signature))
        written: list[tuple[str, dict[str, Any]] | None] = []
        for page in rendered:
            try:
                written.append(None if page is None else (page[0], _written(pub, *page, folders)))
            except OSError:
                written.append(None)
        return written


def write_site(
    pub: Publication,
    cache: BuildCache,
    entries: list[Entry],
    jobs: int | None = None,
    written: dict[str, tuple[str, dict[str, Any]]] | None = None,
    meanwhile: Callable[[], object] = lambda: None,
) -> SiteReport:
    """Write the site of ``entries``. ``written``: the pages the readers already wrote
    (entry path -> page, record), taken as they are when they are their article's.
    ``meanwhile`` is called once, while worker processes make pages if they do."""
    written = written or {}
    renderer = SiteRenderer(pub)
    frame = renderer.fingerprint()
    before = _read_manifest(pub)
    after: dict[str, dict[str, Any]] = {}
    ordered = sorted(entries, key=lambda e: e.sort, reverse=True)
    tasks: list[Task] = []

    def unchanged(relative: str, signature: str) -> bool:
        old = before.get(relative)
        if old is not None and old.get("inputs") == signature and _untouched(pub, relative, old):
            after[relative] = old
            return True
        after[relative] = {"inputs": signature}  # taken: written below
        return False

    # The style sheet every page links to.
    made = 0
    signature = _signature(frame, b"style")
    if not unchanged("style.css", signature):
        after["style.css"] = _written(pub, "style.css", renderer.stylesheet(), signature, set())
        made += 1

    # Article pages: those the readers wrote are taken when they are their article's
    # (and no other article's reader wrote there too); of the others, what changed is
    # rendered, from the article file.
    warnings: list[Problem] = []
    writers = Counter(target for target, _ in written.values())
    for target, entry in _page_owners(pub, ordered, warnings).items():
        if target in after:
            continue  # the style sheet's own path
        signature = _signature(frame, b"article", entry.digest)
        done = written.get(entry.path)
        if done and done[0] == target and writers[target] == 1 and done[1]["inputs"] == signature:
            after[target] = done[1]
            made += 1
            continue
        if not unchanged(target, signature):
            tasks.append((target, signature, [entry.path], None, None))

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
            if not unchanged(listing.path, signature):
                tasks.append((listing.path, signature, [e.path for e in chunk], listing, tag))

    for relative, stamp in _make_all(pub, cache, renderer, tasks, jobs, meanwhile):
        after[relative] = stamp
        made += 1
    pages = sum(1 for path in after if path.endswith(".html"))

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
                # Gone since the article was read: not published (an earlier copy is
                # removed below; the next build reads the article again and warns).
                continue
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
    # A page a reader wrote for an article that has none after all (its slug is another
    # article's, say) goes with the stale ones.
    orphans: dict[str, dict[str, Any]] = {t: {} for t, _ in written.values() if t not in after}
    removed = _remove_stale(pub, {**orphans, **before}, after)
    return SiteReport(pages, made, files, copied, removed, warnings)


def _page_owners(
    pub: Publication, ordered: list[Entry], warnings: list[Problem]
) -> dict[str, Entry]:
    """Which article each page of the site shows. Two articles can claim one page: one
    whose ``link:`` is another's permalink, or two with the same ``link:``. The page is
    the article's whose own permalink it is, else the newest claimant's; each other one
    is told that it has no page of its own (its feed item links to that page)."""
    site = pub.config.site
    claims: dict[str, list[Entry]] = {}
    for entry in ordered:
        target = page_path(pub, entry.link)
        if target is not None:  # None: a page elsewhere (an article's own `link:`)
            claims.setdefault(target, []).append(entry)
    owners: dict[str, Entry] = {}
    for target, claimants in claims.items():
        if len(claimants) == 1:
            owners[target] = claimants[0]
            continue
        own = [e for e in claimants if e.link == site.base_url + site.permalink.format(slug=e.slug)]
        owner = own[0] if own else claimants[0]
        owners[target] = owner
        for other in claimants:
            if other is not owner:
                what = (
                    f"'{other.link}' is the page of {_shown(owner.path)}: "
                    "this article has no page of its own"
                )
                warnings.append(Problem(_shown(other.path), 1, "link", what))
    return owners


def _shown(path: str) -> str:
    # As the catalog shows a file: relative to the current folder when inside it.
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _make_all(
    pub: Publication,
    cache: BuildCache,
    renderer: SiteRenderer,
    tasks: list[Task],
    jobs: int | None,
    meanwhile: Callable[[], object],
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Render and write every page of ``tasks``; each page's manifest record. Many pages
    (a cold build, a new template) are made by worker processes, which read the records
    from the build cache themselves (a site of 10,000 articles has 3,000 list pages),
    while this process does ``meanwhile`` (the feeds): one core is not left idle."""
    workers = jobs or os.cpu_count() or 1
    size = max(1, min(32, len(tasks) // (workers * 8)))
    batches = [tasks[at : at + size] for at in range(0, len(tasks), size)]
    if workers <= 1 or len(tasks) < PARALLEL_FROM:
        meanwhile()
        folders: set[str] = set()
        for batch in batches:
            made = _make(pub, cache, renderer, batch, folders)
            yield from zip((task[0] for task in batch), made, strict=True)
        return
    from concurrent.futures import ProcessPoolExecutor  # only a big rebuild pays for it

    init = (pub, cache.file)
    with ProcessPoolExecutor(workers, initializer=_worker_init, initargs=init) as pool:
        stamps = pool.map(_worker_make, batches)  # every batch sent now
        meanwhile()
        for batch, made in zip(batches, stamps, strict=True):
            yield from zip((task[0] for task in batch), made, strict=True)


def _make(
    pub: Publication,
    cache: BuildCache,
    renderer: SiteRenderer,
    tasks: list[Task],
    folders: set[str],
) -> list[dict[str, Any]]:
    """Make the pages of ``tasks``: the records of all in one query, then every page
    rendered, then every page written (each step in the processor's caches throughout)."""
    wanted = [path for _, _, paths, listing, _ in tasks if listing is not None for path in paths]
    found = cache.records("page", wanted)
    missing = [path for path in wanted if path not in found]
    if missing:
        raise RuntimeError(f"build cache has no page of {missing[0]}")
    pages: list[bytes | None] = []
    for _, _, paths, listing, tag in tasks:
        if listing is None:  # an article's page: from the article (the cache keeps no body)
            article = _read(pub, paths[0])
            pages.append(None if article is None else renderer.article(page_fields(article)))
            continue
        records = [orjson.loads(found[path]) for path in paths]
        body = _bodies(pub, paths)
        pages.append(renderer.listing(records, listing, tag, body=body))
    return [
        # None: changed since the catalog read it; the next build makes its page.
        {"inputs": ""} if data is None else _written(pub, relative, data, signature, folders)
        for (relative, signature, _, _, _), data in zip(tasks, pages, strict=True)
    ]


def _bodies(pub: Publication, paths: list[str]) -> Callable[[int], str]:
    return lambda n: _body(pub, paths[n])


def _read(pub: Publication, path: str) -> Article | None:
    from publisher.content.readers import read_article
    from publisher.errors import ContentError

    try:
        return read_article(Path(path), _shown(path), pub).article
    except ContentError:
        return None


def _body(pub: Publication, path: str) -> str:
    # A list page's template that shows whole articles: read on demand.
    article = _read(pub, path)
    return "" if article is None else article.body_html


_WORKER: tuple[Publication, BuildCache, SiteRenderer, set[str]] | None = None


def _worker_init(pub: Publication, file: Path) -> None:
    global _WORKER
    _WORKER = (pub, BuildCache(file, readonly=True), SiteRenderer(pub), set())


def _worker_make(tasks: list[Task]) -> list[dict[str, Any]]:
    assert _WORKER is not None
    pub, cache, renderer, folders = _WORKER
    return _make(pub, cache, renderer, tasks, folders)


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


def _written(
    pub: Publication, relative: str, data: bytes, signature: str, folders: set[str]
) -> dict[str, Any]:
    # Strings and os calls, not Path objects: this runs for each of 13,000 pages.
    target = os.path.join(_site_root(pub), relative)
    folder = os.path.dirname(target)
    if folder not in folders:  # each folder made once a build, not once a page
        try:
            os.mkdir(folder)
        except FileExistsError:
            pass
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
        folders.add(folder)
    info = replace_small(target, data)
    return {"inputs": signature, "size": info.st_size, "mtime_ns": info.st_mtime_ns}


def _untouched(pub: Publication, relative: str, record: dict[str, Any]) -> bool:
    # A string path and os.stat: this runs for every page of the site at every build.
    try:
        info = os.stat(os.path.join(_site_root(pub), relative))
    except OSError:
        return False
    return bool(info.st_size == record.get("size") and info.st_mtime_ns == record.get("mtime_ns"))


_ROOT: list[tuple[Publication, str]] = []  # the last publication's only


def _site_root(pub: Publication) -> str:
    # The site folder as a string, worked out once a publication (a property that makes
    # a Path) and kept for the last one only: a scheduler loads its settings anew.
    if not _ROOT or _ROOT[0][0] is not pub:
        _ROOT[:] = [(pub, str(pub.site_dir))]
    return _ROOT[0][1]


def _same_source(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return bool(old.get("source_mtime_ns") == new["source_mtime_ns"])


def _read_manifest(pub: Publication) -> dict[str, dict[str, Any]]:
    try:
        data = orjson.loads((pub.state_dir / MANIFEST_FILE).read_bytes())
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
    if after != before:
        pub.state_dir.mkdir(parents=True, exist_ok=True)
        manifest = {"version": 1, "files": after}
        # One line per file: diffable, and written by orjson (13,000 pages: 5 ms, not 100).
        data = orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
        write_atomic(pub.state_dir / MANIFEST_FILE, data)
    return removed
