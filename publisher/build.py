"""``publisher build``: article files -> every configured feed, written atomically.

The pipeline: scan the content folder, reuse the cached rendering of every unchanged file,
read and render the rest (in parallel when there are many), drop duplicates and what is not
yet published at ``now``, then assemble and write each feed. The CLI and the scheduler both
call ``build``; it reads no clock of its own.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from publisher import __version__
from publisher.cache import BuildCache, content_key
from publisher.config import Publication
from publisher.content import READER_VERSION, SUFFIXES, Parsed, decode_article, slugify
from publisher.errors import ConfigError, ContentError, Problem
from publisher.feeds import (
    FILENAMES,
    Author,
    Channel,
    EntryFragments,
    newest,
    render_entry,
    render_feed,
)
from publisher.files import write_atomic

CACHE_FILE = "build-cache.sqlite3"
MANIFEST_FILE = "feeds-manifest.json"
# Below this many files to render, starting worker processes costs more than it saves.
PARALLEL_FROM = 64


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one article file became: an article with its feed entry, or problems."""

    parsed: Parsed | None
    entry: EntryFragments | None
    problems: tuple[Problem, ...]
    mtime: float


@dataclass(frozen=True, slots=True)
class FeedFile:
    path: str
    format: str
    items: int
    written: bool


@dataclass
class BuildReport:
    published: int = 0
    skipped: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    feeds: list[FeedFile] = field(default_factory=list)
    rendered: int = 0
    reused: int = 0
    articles: list[Parsed] = field(default_factory=list)


def build(
    pub: Publication, now: datetime, write: bool = True, jobs: int | None = None
) -> BuildReport:
    """Read every article and (if ``write``) write every feed. Bad articles are skipped and
    reported; the others are published."""
    files = scan_articles(pub)
    report = BuildReport()
    outcomes = _outcomes(pub, files, report, jobs, keep=write)

    seen: dict[str, str] = {}
    published: list[tuple[Parsed, EntryFragments]] = []
    for path, shown in files:
        outcome = outcomes[str(path)]
        report.warnings.extend(outcome.problems if outcome.parsed else ())
        if outcome.parsed is None or outcome.entry is None:
            report.skipped.extend(outcome.problems)
            continue
        article = outcome.parsed.article
        if article.slug in seen:
            report.skipped.append(
                Problem(
                    shown, 1, "slug", f"'{article.slug}' is already used by {seen[article.slug]}"
                )
            )
            continue
        seen[article.slug] = shown
        if article.is_published(now):
            published.append((outcome.parsed, outcome.entry))
    report.published = len(published)
    report.articles = [parsed for parsed, _ in published]
    if write:
        report.feeds = write_feeds(pub, [entry for _, entry in published])
    return report


def scan_articles(pub: Publication) -> list[tuple[Path, str]]:
    """Every article file below the content folder, in a stable order, with the name to
    show for it. Hidden files and folders, and files of other types (images), are not
    articles."""
    folder = pub.articles_dir
    if not folder.is_dir():
        raise ConfigError(
            [
                Problem(
                    str(pub.path.name),
                    pub.line_of("content", "folder") or pub.line_of("content"),
                    "content.folder",
                    f"'{folder}' is not a folder",
                )
            ]
        )
    found: list[Path] = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(
            Path(root, n)
            for n in names
            if not n.startswith(".") and Path(n).suffix.lower() in SUFFIXES
        )
    found.sort()
    return [(p, _shown(p)) for p in found]


def _shown(path: Path) -> str:
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def _fingerprint(pub: Publication) -> bytes:
    # Everything that changes what a reader or render_entry produces from the same bytes.
    config = pub.config
    parts = [READER_VERSION, __version__, config.site.model_dump_json(), config.feeds.content]
    return hashlib.blake2b("\0".join(parts).encode(), digest_size=20).digest()


def _outcomes(
    pub: Publication,
    files: list[tuple[Path, str]],
    report: BuildReport,
    jobs: int | None,
    keep: bool,
) -> dict[str, Outcome]:
    """Outcome of every file, from the cache where the file is unchanged. With ``keep``
    false (``publisher check``) the cache is only read, and state is never created."""
    fingerprint = _fingerprint(pub)
    results: dict[str, Outcome] = {}
    with BuildCache(pub.state_dir / CACHE_FILE, readonly=not keep) as cache:
        known = cache.keys()
        keys: dict[str, bytes] = {}
        todo: list[tuple[str, str, bytes, float]] = []
        hits: list[str] = []
        for path, shown in files:
            name = str(path)
            try:
                raw = path.read_bytes()
                mtime = path.stat().st_mtime
            except OSError as exc:
                results[name] = Outcome(
                    None, None, (Problem(shown, None, "", f"cannot read: {exc.strerror}"),), 0.0
                )
                continue
            keys[name] = content_key(fingerprint, name, raw)
            if known.get(name) == keys[name]:
                hits.append(name)
            todo.append((name, shown, raw, mtime))
        cached = dict(cache.load(hits))
        pending = []
        for task in todo:
            outcome = cached.get(task[0])
            # An article dated by its file's mtime is stale when the mtime moved.
            if outcome is not None and not (
                outcome.parsed and outcome.parsed.used_mtime and outcome.mtime != task[3]
            ):
                results[task[0]] = outcome
            else:
                pending.append(task)
        report.reused = len(todo) - len(pending)
        report.rendered = len(pending)
        fresh = dict(_render_all(pub, pending, jobs))
        results.update(fresh)
        if keep:
            cache.store((name, keys[name], outcome) for name, outcome in fresh.items())
            cache.forget_except(set(keys))
    return results


def _render_all(
    pub: Publication, tasks: list[tuple[str, str, bytes, float]], jobs: int | None
) -> Iterator[tuple[str, Outcome]]:
    workers = jobs or os.cpu_count() or 1
    if workers <= 1 or len(tasks) < PARALLEL_FROM:
        for task in tasks:
            yield task[0], render_file(pub, task)
        return
    chunk = max(1, min(64, len(tasks) // (workers * 8)))
    with ProcessPoolExecutor(workers, initializer=_worker_init, initargs=(pub,)) as pool:
        yield from zip(
            (t[0] for t in tasks), pool.map(_worker_render, tasks, chunksize=chunk), strict=True
        )


def render_file(pub: Publication, task: tuple[str, str, bytes, float]) -> Outcome:
    """Read one article file's bytes into an article and its feed entry."""
    name, shown, raw, mtime = task
    try:
        parsed = decode_article(raw, Path(name), shown, pub, mtime)
    except ContentError as exc:
        return Outcome(None, None, exc.problems, mtime)
    entry = render_entry(parsed.article, pub.config.feeds.content == "full", _author(pub))
    return Outcome(parsed, entry, parsed.warnings, mtime)


_WORKER_PUB: Publication | None = None


def _worker_init(pub: Publication) -> None:
    global _WORKER_PUB
    _WORKER_PUB = pub


def _worker_render(task: tuple[str, str, bytes, float]) -> Outcome:
    assert _WORKER_PUB is not None
    return render_file(_WORKER_PUB, task)


def _author(pub: Publication) -> Author:
    author = pub.config.site.author
    return Author(author.name, author.email, author.uri)


def write_feeds(pub: Publication, entries: list[EntryFragments]) -> list[FeedFile]:
    """Write the main feed and the per-tag feeds in every configured format; remove feed
    files an earlier build wrote that are no longer produced (a tag that went away)."""
    config = pub.config
    site = config.site
    feeds: list[tuple[str, str, list[EntryFragments]]] = [("", site.title, entries)]
    for slug, (name, tagged) in sorted(_by_tag(pub, entries).items()):
        feeds.append((f"tags/{slug}/", f"{site.title}: {name}", tagged))

    written: list[FeedFile] = []
    produced: list[str] = []
    for prefix, title, members in feeds:
        chosen = newest(members, config.feeds.items)
        channel = Channel(
            title=title,
            description=site.description,
            home_url=site.base_url,
            feed_url=pub.feeds_url + prefix,
            language=site.language,
            author=_author(pub),
        )
        for kind in config.feeds.formats:
            relative = prefix + FILENAMES[kind]
            target = pub.feeds_dir / relative
            changed = write_atomic(target, render_feed(kind, channel, chosen))
            written.append(FeedFile(_shown(target), kind, len(chosen), changed))
            produced.append(relative)
    _remove_stale(pub, produced)
    return written


def _by_tag(
    pub: Publication, entries: list[EntryFragments]
) -> dict[str, tuple[str, list[EntryFragments]]]:
    """Entries per tag slug ("Open Source" and "open-source" are one feed), with the tag's
    name as first seen."""
    wanted = pub.config.feeds.tags
    if wanted == "none":
        return {}
    groups: dict[str, tuple[str, list[EntryFragments]]] = {}
    if isinstance(wanted, list):
        # Listed tags get a feed even while empty, so their URLs never 404.
        for tag in wanted:
            groups.setdefault(slugify(tag), (tag, []))
    for entry in entries:
        for tag in entry.tags:
            slug = slugify(tag)
            if not slug:
                continue
            if wanted == "all":
                groups.setdefault(slug, (tag, []))
            if slug in groups:
                groups[slug][1].append(entry)
    return groups


def _remove_stale(pub: Publication, produced: list[str]) -> None:
    manifest = pub.state_dir / MANIFEST_FILE
    try:
        previous = json.loads(manifest.read_text("utf-8"))
    except FileNotFoundError:
        previous = []
    keep = set(produced)
    for relative in previous:
        if relative in keep or ".." in Path(relative).parts:
            continue
        target = pub.feeds_dir / relative
        target.unlink(missing_ok=True)
        parent = target.parent
        while parent != pub.feeds_dir and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    write_atomic(manifest, json.dumps(sorted(keep), indent=0).encode())
