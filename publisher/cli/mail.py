"""``publisher subscribers``, ``send`` and ``status``: lists, delivery and the ledger."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from publisher.cli.common import signer
from publisher.config import Publication
from publisher.digest.personalize import Recipient, prepare
from publisher.headers import clean_text
from publisher.tokens import Signer
from publisher.workers.dispatch import placer_for


def subscribers_command(pub: Publication, args: argparse.Namespace, now: datetime) -> int:
    from publisher import store, subscribers

    engine = store.open_database(pub)
    stamp = now.timestamp()
    list_name = args.list_name
    if args.action in ("import", "add") and list_name not in {
        d.list_name for d in pub.config.digests
    }:
        print(f"{pub.path.name}: warning: no digest sends to the list '{list_name}' yet",
              file=sys.stderr)  # fmt: skip
    try:
        if args.action == "import":
            with engine.begin() as db:
                report = subscribers.import_csv(db, Path(args.file), list_name, stamp)
            for problem in report.problems:
                print(f"{problem} (row skipped)", file=sys.stderr)
            for note in report.notes:
                print(f"{note}", file=sys.stderr)
            print(
                f"{list_name}: {report.added} added, {report.unchanged} already subscribed, "
                f"{report.unsubscribed} left unsubscribed, {report.suppressed} suppressed, "
                f"{len(report.problems)} row(s) refused"
            )
            return 1 if report.problems else 0
        if args.action in ("add", "remove"):
            try:
                address = subscribers.normalize_address(args.address)
            except ValueError as exc:
                print(f"{args.address}: {exc}", file=sys.stderr)
                return 1
            zone = getattr(args, "timezone", None)
            try:
                zone = None if zone is None else subscribers.normalize_zone(zone)
            except ValueError as exc:
                print(f"--timezone: {exc}", file=sys.stderr)
                return 1
            with engine.begin() as db:
                if args.action == "add":
                    outcome = store.add_subscriber(db, address, clean_text(args.name),
                                                   list_name, stamp, args.resubscribe,
                                                   timezone=zone)  # fmt: skip
                    changed = outcome == "added"
                else:
                    changed = store.remove_subscriber(db, address, list_name, stamp)
                    outcome = "added" if changed else "unchanged"
            if outcome == "unsubscribed":
                print(f"{address} unsubscribed from {list_name}: left unsubscribed (give "
                      "--resubscribe if they asked you to subscribe them again)",
                      file=sys.stderr)  # fmt: skip
                return 1
            if outcome == "suppressed":
                print(f"{address} is suppressed (it bounced): not subscribed", file=sys.stderr)
                return 1
            verb = "subscribed to" if args.action == "add" else "unsubscribed from"
            print(f"{address} {verb} {list_name}" + ("" if changed else " (no change)"))
            return 0
        with engine.connect() as db:
            if args.action == "export":
                for line in subscribers.export_csv(db, list_name):
                    sys.stdout.write(line)
                return 0
            rows = list(store.members(db, list_name))
        listed = [
            {"email": m.address, "name": m.name, "status": subscribers.status_of(m),
             "timezone": m.timezone}
            for m in rows
        ]  # fmt: skip
        if args.json:
            print(json.dumps(listed, indent=2, ensure_ascii=False))
        else:
            for entry in listed:
                print(f"{entry['email']}\t{entry['name']}\t{entry['status']}\t"
                      f"{entry['timezone'] or ''}")  # fmt: skip
        return 0
    finally:
        engine.dispose()


def send(pub: Publication, args: argparse.Namespace, now: datetime) -> int:
    from publisher import delivery, store
    from publisher.backends import backend_pool

    digest = pub.digest(args.digest)
    backends = backend_pool(pub)  # options checked first: a mistake is a ConfigError
    token_signer = signer(pub)
    engine = store.open_database(pub)
    try:
        if args.test or args.dry_run:
            return _send_preview(pub, engine, digest, now, token_signer, backends[0], args)

        def composed(letters: Any) -> None:
            for warning in letters.issue.warnings:
                print(f"{digest.name}: warning: {warning}", file=sys.stderr)

        with _progress(args.json) as tick:
            sender = delivery.Sender(engine, pub, backends, progress=tick, processes=True,
                                     workers=placer_for(pub, engine))  # fmt: skip
            reports = delivery.send_digest(sender, digest, now, token_signer, composed=composed)
    finally:
        engine.dispose()
    if not reports:
        reports = [delivery.RunReport(digest.name, status="nothing new to send")]
    if args.json:
        print(json.dumps({"digest": digest.name, "issues": [r.__dict__ for r in reports]},
                         indent=2))  # fmt: skip
    else:
        for report in reports:
            print(report.line())
    # Non-zero while anyone waits (deferred, or claimed by another sender) or an issue
    # paused: a script can tell a finished send from one that needs a look.
    return 0 if all(r.settled for r in reports) else 1


def _send_preview(
    pub: Publication,
    engine: Any,
    digest: Any,
    now: datetime,
    token_signer: Signer,
    backend: Any,
    args: argparse.Namespace,
) -> int:
    """--dry-run: the issue `send` would compose now, and whom it would reach. --test:
    that issue, sent to one address. Neither records anything."""
    from publisher import store
    from publisher.backends import Envelope
    from publisher.delivery import compose_next
    from publisher.store import ledger
    from publisher.subscribers import normalize_address

    address = ""
    if args.test:
        try:
            address = normalize_address(args.test)
        except ValueError as exc:
            print(f"--test: {args.test}: {exc}", file=sys.stderr)
            return 2
    found = compose_next(engine, pub, digest, now)
    if args.dry_run:
        with engine.connect() as db:
            audience = store.count_active(db, digest.list_name)
            unfinished = [
                {"number": int(row.number), "due": ledger.due_rows(db, row.id, now.timestamp())}
                for row in ledger.open_issues(db, digest.name)
            ]
        due = [entry for entry in unfinished if entry["due"]]
        result: dict[str, Any] = {
            "digest": digest.name,
            "issue": None if found is None else found[1].number,
            "articles": 0 if found is None else len(found[1].articles),
            "waiting": 0 if found is None else len(found[0].waiting),
            "passed_over": 0 if found is None else len(found[0].passed_over),
            "recipients": audience if found is not None else 0,
            "unfinished": due,
        }
        if found is None:
            text = f"{digest.name}: nothing new to send"
        else:
            text = (f"{digest.name}: would send issue {result['issue']} with "
                    f"{result['articles']} article(s) to {audience} subscriber(s)")  # fmt: skip
            if result["waiting"]:
                text += f"; {result['waiting']} more article(s) wait for the next issue"
            if result["passed_over"]:
                text += f"; {result['passed_over']} older article(s) passed over (overflow: drop)"
        for entry in due:
            text += f"\n  and the {entry['due']} due row(s) of unfinished issue #{entry['number']}"
        print(json.dumps(result) if args.json else text)
        return 0
    if found is None:
        print(f"{digest.name}: nothing new to send: no test issue sent")
        return 0
    issue = found[1]
    letters = prepare(pub, issue, token_signer)
    with engine.connect() as db:
        known = store.find_subscriber(db, address)
    # A subscriber gets the very message `send` would send them (their name, their
    # unsubscribe link); any other address the unnamed one, with a link that does nothing.
    recipient = Recipient(address, *(known or ("", "test")))
    envelope = Envelope(
        pub.config.delivery.bounce_address or issue.sender[1],
        address,
        letters.message_id(recipient),
    )
    with backend:
        provider = backend.send_message(letters.letter(recipient), envelope)
    print(f"{digest.name}: test of issue {issue.number} sent to {address} ({provider})")
    return 0


class _progress:
    """A progress bar with rate on a terminal; nothing otherwise (the summary lines are
    printed at the end either way)."""

    def __init__(self, quiet: bool) -> None:
        self.bar: Any = None
        if quiet or not sys.stderr.isatty():
            return
        from tqdm import tqdm  # type: ignore[import-untyped]

        self.bar = tqdm(unit="msg", desc="sent", file=sys.stderr)

    def __enter__(self) -> Any:
        return None if self.bar is None else self.bar.update

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def status(pub: Publication, args: argparse.Namespace, now: datetime) -> int:
    from publisher import store
    from publisher.overview import (
        STATUSES,
        confirmation_line,
        confirmation_overview,
        digest_overview,
        source_line,
        sources_overview,
        workers_lines,
        workers_overview,
    )

    engine = store.open_database(pub)
    try:
        with engine.connect() as db:
            result = [digest_overview(db, pub, digest, now) for digest in pub.config.digests]
            confirmations = confirmation_overview(db, now)
            upstream = sources_overview(db, pub)
            workers = workers_overview(db, now) if pub.config.workers is not None else None
    finally:
        engine.dispose()
    if args.json:
        shown = {"digests": result, "confirmations": confirmations, "sources": upstream}
        if workers is not None:
            shown["workers"] = workers
        print(json.dumps(shown, indent=2))
        return 0
    for entry in result:
        upcoming = f"; next run {entry['next_run']}" if entry["next_run"] else ""
        waiting, most = entry["articles_waiting"], entry["max_articles"]
        print(
            f"{entry['digest']} (list {entry['list']}, {entry['subscribers']} subscriber(s)"
            f"{upcoming})"
            + (
                f"; {waiting} article(s) in no issue yet (the next takes up to {most})"
                if waiting
                else ""
            )
        )
        if entry["held"]:
            print(f"  held: {entry['held']}; after a look: publisher bounces resume "
                  f"{entry['digest']}")  # fmt: skip
        for issue in entry["issues"]:
            counts = ", ".join(f"{key} {issue[key]}" for key in STATUSES)
            if issue["sending"]:
                counts += f", being sent {issue['sending']}"
            bounces = issue["bounces"]
            if bounces["hard"] or bounces["soft"] or issue["complaints"] or issue["unsubscribes"]:
                counts += (f"; came back: {bounces['hard']} hard bounce(s), {bounces['soft']} "
                           f"soft, {issue['complaints']} complaint(s); "
                           f"{issue['unsubscribes']} unsubscribed")  # fmt: skip
            why = f" ({issue['reason']})" if issue["status"] == "paused" and issue["reason"] else ""
            print(f"  #{issue['number']} {issue['status']}{why}: {counts}")
            if issue["due_by_hour"]:
                hours = ", ".join(
                    f"{datetime.fromisoformat(h['hour']).strftime('%a %H:%M UTC')} {h['rows']}"
                    for h in issue["due_by_hour"]
                )  # fmt: skip
                print(f"    rows falling due in the next day, by hour: {hours}")
            for reason in issue["why"]:
                print(f"    {reason['rows']} {reason['status']}: {reason['reply']}")
        if not entry["issues"]:
            print("  no issue yet")
    print(confirmation_line(confirmations))
    for entry in upstream:
        print(source_line(entry))
    for line in workers_lines(workers) if workers is not None else []:
        print(line)
    return 0
