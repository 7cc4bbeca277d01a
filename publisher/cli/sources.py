"""`publisher sources`: fetch the upstream feeds that are due, release held entries."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from publisher.config import Publication
from publisher.errors import ConfigError, Problem


def sources_command(pub: Publication, args: argparse.Namespace, now: datetime) -> int:
    from publisher.store import open_database

    if args.action == "import":
        from pathlib import Path

        from publisher.sources.opml import import_opml

        imported = import_opml(pub, Path(args.file), args.file)
        for name, url in imported.added:
            print(f"added source {name}: {url}")
        print(
            f"{pub.path.name}: {len(imported.added)} source(s) added"
            + (f", {len(imported.known)} already there" if imported.known else "")
        )
        return 0
    if args.action == "release":
        names = [source.name for source in pub.config.sources]
        if args.source not in names:
            known = ", ".join(names) or "none"
            what = f"no source '{args.source}' in schedule.yaml (its sources: {known})"
            raise ConfigError([Problem(pub.path.name, pub.line_of("sources"), "sources", what)])
        from publisher.store.upstream import release

        engine = open_database(pub)
        try:
            with engine.begin() as db:
                count = release(db, args.source)
        finally:
            engine.dispose()
        print(f"{args.source}: {count} held entries released")
        return 0
    from publisher.sources.poll import poll

    engine = open_database(pub)
    try:
        done = poll(pub, engine, now.timestamp(), force=args.all)
    finally:
        engine.dispose()
    failed = False
    for polled in done:
        if polled.problem is not None:
            failed = True
            print(polled.problem, file=sys.stderr)
        else:
            print(polled.line())
    if not pub.config.sources:
        print("no sources in schedule.yaml")
    return 1 if failed else 0
