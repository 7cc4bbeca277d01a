"""`publisher bounces`: read the return mailbox, resume a digest the brake held."""

from __future__ import annotations

import argparse
import json
from datetime import datetime

from publisher.config import Publication
from publisher.errors import ConfigError, Problem


def bounces_command(pub: Publication, args: argparse.Namespace, now: datetime) -> int:
    from publisher.store import open_database
    from publisher.store import returns as returned

    if args.action == "resume":
        digest = pub.digest(args.digest)  # an unknown name is a ConfigError naming the known
        engine = open_database(pub)
        try:
            with engine.begin() as db:
                released = returned.release(db, digest.name)
        finally:
            engine.dispose()
        print(f"{digest.name}: resumed" if released else f"{digest.name}: was not held")
        return 0
    from publisher.returns.read import fetch_returns
    from publisher.tokens import publication_signer

    settings = pub.config.returns
    if settings is None or (settings.maildir is None and settings.imap is None):
        what = "no return mailbox: give returns.maildir or returns.imap in schedule.yaml"
        raise ConfigError([Problem(pub.path.name, pub.line_of("returns"), "returns", what)])
    signer = publication_signer(pub)
    engine = open_database(pub)
    try:
        fetched = fetch_returns(engine, pub, signer, now.timestamp())
    finally:
        engine.dispose()
    assert fetched is not None
    if args.json:
        print(json.dumps({"read": fetched.read, "acted": dict(fetched.acted),
                          "unchanged": fetched.unchanged, "left": fetched.left,
                          "lines": fetched.lines}, indent=2))  # fmt: skip
    else:
        for line in fetched.lines:
            print(f"  {line}")
        print(fetched.line())
    return 0
