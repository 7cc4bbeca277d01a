"""The catalog: every article file of the content folder, read only when it changed.

Scan the folder; take every unchanged file's outcome from the build cache (a file whose
size, mtime and inode have not moved is not even read again); read the rest (in worker
processes when there are many), storing each result as it arrives; drop duplicate slugs and
what is not yet published at ``now``. Memory stays flat in the number of articles: only a
small ``Entry`` per article is held, never all the rendered text.

What a feed makes of an article is not this station's business: the caller hands in
``fragments``, a module-level function (worker processes receive it by name) that turns an
``Article`` into its cached feed fragments.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from publisher import __version__
from publisher.config import Publication
from publisher.content import READER_VERSION, SUFFIXES
from publisher.content.cache import BuildCache, Entry, Outcome, Row, sort_key, stat_signature
from publisher.content.source import read_source
from publisher.errors import ConfigError, ContentError, Problem
from publisher.model import Article

if TYPE_CHECKING:
    from publisher.content.readers import Parsed

# Files modified this recently are verified by content on the next build (see read_files).
RACY_NS = 2_000_000_000
# Below this many files to read, starting worker processes costs more than it saves.
PARALLEL_FROM = 64

# An article -> its feed fragments (rss, atom, json).
Fragments = Callable[[Publication, Article], tuple[bytes, bytes, bytes]]
# A published article and its digest -> its page written: (path below the site, the
# record of what was written), or None (its page is not on this site).
# The page maker: writes the pages of (article, entry digest) pairs, each page's (path,
# record) or None (see site.files.ArticlePages).
Pages = Callable[
    [Publication, list[tuple[Article, bytes]]], "list[tuple[str, dict[str, Any]] | None]"
]
Publish = tuple[Pages, datetime] | None  # the page maker, and the moment published


@dataclass
class Catalog:
    published: list[Entry] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    rendered: int = 0
    reused: int = 0
    # The pages the readers wrote while the articles were in hand: entry path -> (page,
    # its record). The site checks each before it counts (see site.files).
    pages: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Upstream:
    """An upstream entry the publication publishes itself (a source with ``publish``): a
    row of the catalog as a file is, kept in the build cache under ``name``."""

    name: str  # content.upstream.upstream_name: never a file's path
    shown: str  # how its problems name it: "sources[0] (harbour)"
    data: bytes  # what its article is made of (the entry, its source's settings): its key
    make: Callable[[], Article]


def catalog(
    pub: Publication,
    cache: BuildCache,
    now: datetime,
    fragments: Fragments,
    jobs: int | None = None,
    keep: bool = True,
    pages: Pages | None = None,
    upstream: Sequence[Upstream] = (),
) -> Catalog:
    """What is published at ``now``, with every skipped article's problem. With ``keep``
    false (``publisher check``) the cache is only read. ``pages``: each article read and
    published at ``now`` has its page made by it, there and then. ``upstream``: entries of
    upstream feeds, published like the files."""
    files = scan_articles(pub) + [(item.name, item.shown) for item in upstream]
    found = Catalog()
    publish = (pages, now) if pages is not None and keep else None
    outcomes = _outcomes(pub, cache, files, found, fragments, jobs, keep, publish, upstream)
    candidates: list[tuple[str, Entry, float]] = []
    claims: dict[str, list[int]] = {}
    for name, shown in files:
        entry = outcomes[name].entry
        if entry is not None:
            claims.setdefault(entry.slug, []).append(len(candidates))
            candidates.append((shown, entry, outcomes[name].mtime))
    taken = _slug_holders(cache, candidates, claims)
    number = 0
    for name, _ in files:  # problems in the order of the files
        outcome = outcomes[name]
        if outcome.entry is None:
            found.skipped.extend(outcome.problems)
            continue
        found.warnings.extend(outcome.problems)
        shown, entry, _ = candidates[number]
        holder = taken.get(number)
        number += 1
        if holder is not None:
            what = f"'{entry.slug}' is already used by {holder}, which had it first"
            found.skipped.append(Problem(shown, 1, "slug", what))
        elif not entry.draft and entry.date <= now:
            found.published.append(entry)
    return found


def _slug_holders(
    cache: BuildCache, candidates: list[tuple[str, Entry, float]], claims: dict[str, list[int]]
) -> dict[int, str]:
    """For each file that claims a slug another file has, the one that keeps it: the
    file a build met first (a new file must not take over a published article's slug,
    its feed item and its link); with no build to remember (a new cache), the file
    modified longest ago; then the earlier article, then the first by name."""
    clashes = [numbers for numbers in claims.values() if len(numbers) > 1]
    if not clashes:
        return {}
    seen = cache.first_seen(candidates[n][1].path for numbers in clashes for n in numbers)

    def order(number: int) -> tuple[float, float, datetime, str]:
        shown, entry, mtime = candidates[number]
        return seen.get(entry.path, math.inf), mtime, entry.date, shown

    taken: dict[int, str] = {}
    for numbers in clashes:
        keeper, *others = sorted(numbers, key=order)
        for number in others:
            taken[number] = candidates[keeper][0]
    return taken


def load_articles(pub: Publication, entries: list[Entry]) -> list[Article]:
    """The full articles behind ``entries``, read again from their files (a digest needs a
    few dozen; reading them costs milliseconds, storing all of them would cost every
    build)."""
    from publisher.content.readers import read_article

    shown = {name: shown for name, shown in scan_articles(pub)}
    return [read_article(Path(e.path), shown.get(e.path, e.path), pub).article for e in entries]


def scan_articles(pub: Publication) -> list[tuple[str, str]]:
    """Every article file below the content folder, in a stable order, with the name to
    show for it (relative to the current folder when inside it). Hidden files and folders
    and files of other types (images) are not articles."""
    folder = pub.articles_dir
    if not folder.is_dir():
        raise ConfigError(
            [
                Problem(
                    pub.path.name,
                    pub.line_of("content", "folder") or pub.line_of("content"),
                    "content.folder",
                    f"'{folder}' is not a folder",
                )
            ]
        )
    shown_root = os.path.relpath(folder)
    if shown_root.startswith(".."):
        shown_root = str(folder)
    found: list[tuple[str, str]] = []
    folders = [(str(folder), "" if shown_root == "." else shown_root + "/")]
    while folders:  # bounded: each folder is visited once (symlinked folders are not followed)
        real, shown = folders.pop()
        with os.scandir(real) as listing:
            for item in listing:
                if item.name.startswith("."):
                    continue
                if item.is_dir(follow_symlinks=False):
                    folders.append((item.path, f"{shown}{item.name}/"))
                elif os.path.splitext(item.name)[1].lower() in SUFFIXES:
                    found.append((item.path, shown + item.name))
    found.sort()
    return found


def _fingerprint(pub: Publication) -> bytes:
    # Everything that changes what a reader or the fragments produce from the same bytes.
    config = pub.config
    parts = [
        READER_VERSION,
        __version__,
        config.site.model_dump_json(),
        config.feeds.content,
        ",".join(sorted(config.feeds.formats)),  # the fragments made (see feed_fragments)
        str(config.content.max_size),
        # Which folders are the build's own (links to them are not copied), and whether
        # the site's page records are kept at all.
        config.feeds.folder,
        config.website.folder,
        config.state.folder,
        str(config.website.enabled),
    ]
    return hashlib.sha256("\0".join(parts).encode()).digest()


def _key(fingerprint: bytes, name: str, raw: bytes) -> bytes:
    digest = hashlib.sha256(fingerprint)
    digest.update(name.encode("utf-8", "surrogateescape") + b"\0")
    digest.update(raw)
    return digest.digest()


def _outcomes(
    pub: Publication,
    cache: BuildCache,
    files: list[tuple[str, str]],
    report: Catalog,
    fragments: Fragments,
    jobs: int | None,
    keep: bool,
    publish: Publish = None,
    upstream: Sequence[Upstream] = (),
) -> dict[str, Outcome]:
    """Outcome of every file (and upstream entry), from the cache where it is unchanged.
    With ``keep`` false (``publisher check``) the cache is only read."""
    fingerprint = _fingerprint(pub)
    folder = str(pub.articles_dir)
    limit = pub.config.content.max_size
    shown_of = dict(files)
    cached = cache.cached()
    pending: list[tuple[str, str]] = []
    results: dict[str, Outcome] = {}
    fresh: list[tuple[Upstream, bytes]] = []
    for item in upstream:  # unchanged when what it is made of is
        key = _key(fingerprint, item.name, item.data)
        hit = cached.get(item.name)
        if hit is not None and hit.key == key:
            results[item.name] = hit.outcome
        else:
            fresh.append((item, key))
    entries = {item.name for item in upstream}
    for name, shown in files:
        if name in entries:
            continue  # an upstream entry, above
        hit = cached.get(name)
        if hit is None:
            pending.append((name, shown))  # never seen: its worker reads and hashes it
            continue
        try:
            info = os.stat(name)
            if stat_signature(fingerprint, info.st_size, info.st_mtime_ns, info.st_ino) != hit.stat:
                # Touched: unchanged only if the bytes (not just the mtime) are the same.
                raw, _ = read_source(name, folder, shown, limit)
                if _key(fingerprint, name, raw) != hit.key:
                    pending.append((name, shown))
                    continue
        except (OSError, ContentError):
            pending.append((name, shown))  # its worker reports why it cannot be read
            continue
        # An article dated by its file's mtime is stale when the mtime moved.
        if hit.outcome.used_mtime and hit.outcome.mtime != info.st_mtime:
            pending.append((name, shown))
            continue
        results[name] = hit.outcome
    pending.sort()
    report.rendered = len(pending) + len(fresh)
    report.reused = len(results)
    rows = _read_all(pub, fingerprint, fragments, pending, jobs, publish)
    _keep(cache, _collect(rows, results, report), keep)
    if fresh:
        made = iter(_read_upstream(pub, fragments, fresh, publish))
        _keep(cache, _collect(made, results, report), keep)
    # An article whose links went stale since it was read (the article it links to has
    # another permalink now, or is gone; a file it references was deleted) is read again:
    # its page and items then link to what exists, and its warnings say what does not.
    # (One read in this build already saw them as they are.)
    read = {name for name, _ in pending}
    again = [name for name in _stale_links(pub, results) if name not in read]
    if again:
        report.rendered += len(again)
        report.reused -= len(again)
        rows = iter(
            read_files(
                pub, fingerprint, fragments, [(name, shown_of[name]) for name in again], publish
            )
        )
        _keep(cache, _collect(rows, results, report), keep)
    if keep:
        cache.forget([name for name in cached if name not in shown_of])
    return results


def _keep(cache: BuildCache, rows: Iterator[Row], keep: bool) -> None:
    if keep:
        cache.store(rows)
    else:
        for _ in rows:
            pass


def _stale_links(pub: Publication, results: dict[str, Outcome]) -> list[str]:
    """The articles to read again: one linking to another article's source file whose
    permalink is no longer the one it used (or which is gone), or referencing a file that
    is gone. A stat per referenced file; articles with neither cost nothing."""
    root = str(pub.root)
    permalinks: dict[str, str] | None = None
    again: list[str] = []
    for name, outcome in results.items():
        entry = outcome.entry
        if entry is None or not (entry.linked or entry.files):
            continue
        if any(not os.path.isfile(os.path.join(root, file)) for file in entry.files):
            again.append(name)
            continue
        if not entry.linked:
            continue
        if permalinks is None:  # made once, when the first article with such links comes
            permalinks = {
                os.path.relpath(other, root).replace(os.sep, "/"): found.entry.link
                for other, found in results.items()
                if found.entry is not None
            }
        for source, used in entry.linked:
            current = permalinks.get(source)
            gone = current is None and not os.path.isfile(os.path.join(root, source))
            if gone or (current is not None and current != used):
                again.append(name)
                break
    return sorted(again)


def _collect(rows: Iterator[Row], results: dict[str, Outcome], report: Catalog) -> Iterator[Row]:
    for row in rows:
        results[row.path] = row.outcome
        if row.written is not None:
            report.pages[row.path] = row.written
        yield row


def _read_all(
    pub: Publication,
    fingerprint: bytes,
    fragments: Fragments,
    tasks: list[tuple[str, str]],
    jobs: int | None,
    publish: Publish = None,
) -> Iterator[Row]:
    workers = jobs or os.cpu_count() or 1
    batch = max(1, min(BATCH, len(tasks) // (workers * 8)))
    batches = [tasks[at : at + batch] for at in range(0, len(tasks), batch)]
    if workers <= 1 or len(tasks) < PARALLEL_FROM:
        for some in batches:
            yield from read_files(pub, fingerprint, fragments, some, publish)
        return
    from concurrent.futures import ProcessPoolExecutor  # only a cold build pays for it

    with ProcessPoolExecutor(
        workers, initializer=_worker_init, initargs=(pub, fingerprint, fragments, publish)
    ) as pool:
        for rows in pool.map(_worker_read, batches):
            yield from rows


# Articles a worker reads together, each step for all of them before the next (see
# read_files); also what goes to and comes back from a worker in one message.
BATCH = 32


def read_files(
    pub: Publication,
    fingerprint: bytes,
    fragments: Fragments,
    tasks: list[tuple[str, str]],
    publish: Publish = None,
) -> list[Row]:
    """Read article files (``(path, shown)`` each) and make their feed fragments (and,
    with ``publish``, the page of each that is published): their rows, in order.

    Step by step for the whole batch (every file read, then every one parsed, then their
    feed items, then their pages) rather than article by article: each step's code and
    tables then stay in the processor's caches from one article to the next, which made
    a cold build's reading a third faster. The key is computed from the bytes actually
    read, so a file edited meanwhile is simply seen as changed next time."""
    # Imported here: a rebuild with nothing to read never loads the readers.
    from publisher.content.readers import decode_article

    rows: list[Row | None] = [None] * len(tasks)
    read: list[tuple[int, bytes, os.stat_result, bytes, str]] = []
    folder, limit = str(pub.articles_dir), pub.config.content.max_size
    for index, (name, shown) in enumerate(tasks):
        try:
            raw, info = read_source(name, folder, shown, limit)
        except ContentError as exc:
            outcome = Outcome(None, exc.problems, 0.0, False)
            rows[index] = Row(outcome, name, b"", "", None, None, None)
            continue
        stat = stat_signature(fingerprint, info.st_size, info.st_mtime_ns, info.st_ino)
        if time.time_ns() - info.st_mtime_ns < RACY_NS:
            # "Racy git": a file written within the filesystem's timestamp granularity of
            # now could change again without its mtime moving. Such a row is checked by
            # content next time. (The clock decides only this, never what a build outputs.)
            stat = ""
        read.append((index, raw, info, _key(fingerprint, name, raw), stat))
    parsed: list[_Parsed] = []
    for index, raw, info, key, stat in read:
        name, shown = tasks[index]
        try:
            parse = decode_article(raw, Path(name), shown, pub, info.st_mtime)
        except ContentError as exc:
            outcome = Outcome(None, exc.problems, info.st_mtime, False)
            rows[index] = Row(outcome, name, key, stat, None, None, None)
            continue
        parsed.append((index, name, shown, info.st_mtime, key, stat, parse))
    _finish(pub, fragments, publish, parsed, rows)
    return [row for row in rows if row is not None]


def _read_upstream(
    pub: Publication, fragments: Fragments, fresh: list[tuple[Upstream, bytes]], publish: Publish
) -> list[Row]:
    """The rows of upstream entries new or changed since the last build (in this process:
    they are few, and their text is in hand already)."""
    from publisher.content.readers import Parsed, unreadable

    rows: list[Row | None] = [None] * len(fresh)
    parsed: list[_Parsed] = []
    for index, (item, key) in enumerate(fresh):
        try:
            article = item.make()
        except Exception as exc:  # noqa: BLE001 - this entry's problem; the others go on
            outcome = Outcome(None, (unreadable(item.shown, exc),), 0.0, False)
            rows[index] = Row(outcome, item.name, key, "", None, None, None)
            continue
        parsed.append((index, item.name, item.shown, 0.0, key, "", Parsed(article, (), False)))
    _finish(pub, fragments, publish, parsed, rows)
    return [row for row in rows if row is not None]


# An article read: (its place in the batch, path, shown name, mtime, key, stat, parse).
_Parsed = tuple[int, str, str, float, bytes, str, "Parsed"]


def _finish(
    pub: Publication,
    fragments: Fragments,
    publish: Publish,
    parsed: list[_Parsed],
    rows: list[Row | None],
) -> None:
    """The steps after parsing, each for the whole batch: the feed fragments, the
    entries, the pages of those published; each article's row into ``rows``."""
    from publisher.content.readers import unreadable

    made = []
    for index, name, shown, mtime, key, stat, parse in parsed:
        try:
            feed = fragments(pub, parse.article)
        except Exception as exc:  # noqa: BLE001 - this article's problem; the others go on
            outcome = Outcome(None, (unreadable(shown, exc),), mtime, False)
            rows[index] = Row(outcome, name, key, stat, None, None, None)
            continue
        made.append((index, mtime, key, stat, parse, feed, _entry(pub, name, parse.article, feed)))
    # The pages of those published, now, from the articles in hand, rather than from the
    # cache later.
    written: dict[int, tuple[str, dict[str, Any]] | None] = {}
    if publish is not None:
        public = [
            (index, parse.article, entry.digest)
            for index, _, _, _, parse, _, (entry, _) in made
            if not parse.article.draft and parse.article.date <= publish[1]
        ]
        pages = publish[0](pub, [(article, digest) for _, article, digest in public])
        written = {index: page for (index, _, _), page in zip(public, pages, strict=True)}
    for index, mtime, key, stat, parse, (rss, atom, json), (entry, page) in made:
        outcome = Outcome(entry, parse.warnings, mtime, parse.used_mtime)
        rows[index] = Row(outcome, entry.path, key, stat, rss, atom, json, page, written.get(index))


def _entry(
    pub: Publication, name: str, article: Article, feed: tuple[bytes, bytes, bytes]
) -> tuple[Entry, bytes | None]:
    """The catalog's entry of an article, and its page record (only for a site: what its
    lists show). The entry's digest covers everything a page or a feed shows of it."""
    page = page_record(article) if pub.config.website.enabled else None
    digest = hashlib.sha256(feed[0])
    digest.update(feed[1])
    digest.update(feed[2])
    digest.update(page or b"")
    # The body, which a feed of summaries does not carry: the article's page shows it.
    digest.update(article.body_html.encode("utf-8", "surrogatepass"))
    entry = Entry(
        name,
        digest.digest(),
        sort_key(article.date, article.slug),
        article.slug,
        article.date,
        article.modified,
        article.tags,
        article.draft,
        article.files,
        article.link,
        article.linked,
    )
    return entry, page


def page_fields(article: Article) -> dict[str, Any]:
    """The article as the site's pages show it."""
    image = article.image
    return {
        "slug": article.slug, "title": article.title, "date": article.date.isoformat(),
        "updated": None if article.updated is None else article.updated.isoformat(),
        "author": article.author, "tags": list(article.tags),
        "summary": article.summary_html, "body": article.body_html, "link": article.link,
        "image": None if image is None else {"url": image.url, "alt": image.alt},
    }  # fmt: skip


def page_record(article: Article) -> bytes:
    """What the site's lists show of the article (JSON, without its body): kept in the
    build cache, so that a list page is made again without reading its articles. An
    article's own page is made from the article itself."""
    fields = page_fields(article)
    del fields["body"]
    return orjson.dumps(fields)


_WORKER: tuple[Publication, bytes, Fragments, Publish] | None = None


def _worker_init(
    pub: Publication, fingerprint: bytes, fragments: Fragments, publish: Publish
) -> None:
    global _WORKER
    _WORKER = (pub, fingerprint, fragments, publish)


def _worker_read(tasks: list[tuple[str, str]]) -> list[Row]:
    assert _WORKER is not None
    pub, fingerprint, fragments, publish = _WORKER
    return read_files(pub, fingerprint, fragments, tasks, publish)
