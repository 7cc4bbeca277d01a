"""``publisher build``: the catalog of the content folder -> every configured feed, and
the site.

Composes three stations: ``content.catalog`` (which articles, read only when they
changed, published at ``now``), ``feeds.files`` (the feed files, written atomically,
untouched when unchanged) and ``site.files`` (the pages and the files they reference,
the same way). The CLI and the scheduler both call ``build``; it reads no clock of its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from publisher.config import Publication
from publisher.content.cache import BuildCache
from publisher.content.catalog import (
    Catalog,
    Pages,
    Upstream,
    catalog,
    load_articles,
    scan_articles,
)
from publisher.model import Article

if TYPE_CHECKING:
    from publisher.feeds.files import FeedFile
    from publisher.feeds.websub import Ping
    from publisher.site.files import SiteReport

CACHE_FILE = "build-cache.sqlite3"
__all__ = ["CACHE_FILE", "BuildReport", "build", "feed_fragments", "load_articles", "scan_articles"]


@dataclass
class BuildReport(Catalog):
    """The catalog of the build, and the feed files it wrote."""

    feeds: list[FeedFile] = field(default_factory=list)
    site: SiteReport | None = None  # None: the site is off, or nothing was written
    pings: list[Ping] = field(default_factory=list)  # what the WebSub hubs answered


def build(
    pub: Publication,
    now: datetime,
    write: bool = True,
    jobs: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> BuildReport:
    """Read every article and (if ``write``) write every feed and the site, then tell the
    WebSub hubs which feeds changed (``sleep`` waits between a hub's attempts). Bad
    articles are skipped and reported; the others are published."""
    with BuildCache(pub.state_dir / CACHE_FILE, readonly=not write) as cache:
        pages: Pages | None = None
        if write and pub.config.website.enabled:
            # Each article's page is written while its reader has it (see site.files).
            from publisher.site.files import ArticlePages

            pages = ArticlePages()
        upstream = upstream_items(pub)
        found = catalog(
            pub, cache, now, feed_fragments, jobs, keep=write, pages=pages, upstream=upstream
        )
        report = BuildReport(
            found.published, found.skipped, found.warnings, found.rendered, found.reused
        )
        if write:
            from publisher.feeds.files import write_feeds  # a send writes no feeds

            feeds_done = False

            def feeds() -> None:  # once, whether the site calls it or not
                nonlocal feeds_done
                if not feeds_done:
                    feeds_done = True
                    report.feeds = write_feeds(pub, cache, report.published)

            try:
                if pub.config.website.enabled:
                    from publisher.site.files import write_site

                    # The feeds are written while worker processes make the list pages.
                    site = write_site(pub, cache, report.published, jobs, found.pages, feeds)
                    report.site = site
                    report.warnings.extend(site.warnings)
            finally:
                feeds()  # a site that fails (a broken template) costs the site alone
    changed = [f.url for f in report.feeds if f.written and not f.archive]
    if write and changed and pub.config.feeds.hubs:
        from publisher.feeds.websub import publish

        report.pings = publish(pub.config.feeds.hubs, changed, sleep)
    return report


def upstream_items(pub: Publication) -> list[Upstream]:
    """The entries of the sources the publication publishes itself (``publish``), from
    the state database where their fetches recorded them: no network."""
    chosen = {s.name: (i, s) for i, s in enumerate(pub.config.sources) if s.publish}
    if not chosen:
        return []
    from publisher.content.upstream import upstream_article, upstream_name
    from publisher.store import open_database
    from publisher.store.upstream import shown_entries

    url = pub.database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return []  # nothing fetched yet; and `publisher check` makes no database
    engine = open_database(pub)
    try:
        with engine.connect() as db:
            stored = shown_entries(db, list(chosen))
    finally:
        engine.dispose()
    items = []
    for found in stored:
        index, source = chosen[found.source]
        # Its key: the entry, and what of its source's settings its article shows.
        made_of = [index, source.model_dump(mode="json"), found.first_seen, asdict(found.entry)]
        items.append(
            Upstream(
                upstream_name(source.name, found.entry.identity),
                f"sources[{index}] ({source.name})",
                json.dumps(made_of, sort_keys=True).encode(),
                partial(upstream_article, pub, index, source, found.first_seen, found.entry),
            )
        )
    return items


def feed_fragments(pub: Publication, article: Article) -> tuple[bytes, bytes, bytes]:
    """An article's RSS item, Atom entry and JSON Feed item, as the build cache keeps them
    (made only for an article the cache does not have yet; a format the publication does
    not publish is left empty)."""
    from publisher.feeds.files import feed_author
    from publisher.feeds.render import render_entry

    feeds = pub.config.feeds
    fragments = render_entry(article, feeds.content == "full", feed_author(pub), feeds.formats)
    return fragments.rss, fragments.atom, fragments.json
