"""The command line: the contract scripts and operators rely on.

Exit status: 0 success, 1 a reported problem (one ``where: what`` line each on stderr),
2 a usage error. With ``--json`` a command prints one JSON document on stdout and nothing
else there. This is the only layer that reads the clock.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from publisher import __version__
from publisher.build import BuildReport, build, load_articles
from publisher.config import Publication, config_path, load_config
from publisher.digest import Window, compose_issue, select_articles
from publisher.errors import Problem, PublisherError
from publisher.headers import clean_text
from publisher.personalize import Recipient, prepare
from publisher.tokens import Signer, signer_from_environment


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        now = _now(args.now) if getattr(args, "now", None) else datetime.now(UTC)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        pub = load_config(config_path(args.config))
        status: int = args.handler(pub, args, now)
        return status
    except PublisherError as exc:
        if args.debug:
            traceback.print_exc()
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="publisher",
        description="Publish a folder of articles as RSS, Atom and JSON feeds.",
    )
    _common_options(parser, argparse.SUPPRESS)
    parser.set_defaults(config=None, debug=False)
    # The same options after the command name; SUPPRESS keeps a subcommand from
    # overwriting what was given before it ("publisher -c x.yaml build").
    common = argparse.ArgumentParser(add_help=False)
    _common_options(common, argparse.SUPPRESS)
    parser.add_argument("--version", action="version", version=f"publisher {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    check = commands.add_parser(
        "check", parents=[common], help="validate schedule.yaml and every article; write nothing"
    )
    check.add_argument("--now", metavar="ISO", help="judge drafts and future dates at this time")
    check.set_defaults(handler=_check)

    build_cmd = commands.add_parser("build", parents=[common], help="write every feed")
    build_cmd.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    build_cmd.add_argument(
        "--now", metavar="ISO", help="publish what is due at this time (default: now)"
    )
    build_cmd.add_argument(
        "--jobs", type=int, metavar="N", help="processes for reading articles (default: cores)"
    )
    build_cmd.set_defaults(handler=_build)

    preview = commands.add_parser(
        "preview", parents=[common], help="write a digest issue for a sample recipient"
    )
    preview.add_argument("digest", metavar="DIGEST", help="the digest's name in schedule.yaml")
    preview.add_argument("--out", required=True, metavar="DIR", help="folder for .eml/.html/.txt")
    preview.add_argument("--now", metavar="ISO", help="compose the issue due at this time")
    preview.set_defaults(handler=_preview)

    subs = commands.add_parser("subscribers", parents=[common], help="manage subscriber lists")
    actions = subs.add_subparsers(dest="action", metavar="ACTION", required=True)
    importing = actions.add_parser(
        "import", parents=[common], help="add every address of a CSV file"
    )
    importing.add_argument("file", metavar="FILE.csv")
    adding = actions.add_parser("add", parents=[common], help="subscribe one address")
    adding.add_argument("address", metavar="EMAIL")
    adding.add_argument("--name", default="", help="the subscriber's name")
    removing = actions.add_parser("remove", parents=[common], help="unsubscribe one address")
    removing.add_argument("address", metavar="EMAIL")
    listing = actions.add_parser("list", parents=[common], help="show a list's subscribers")
    listing.add_argument("--json", action="store_true", help="print JSON on stdout")
    actions.add_parser("export", parents=[common], help="write a list as CSV on stdout")
    for action in (importing, adding, removing, listing, *[actions.choices["export"]]):
        action.add_argument("--list", required=True, dest="list_name", metavar="NAME")
    subs.set_defaults(handler=_subscribers)
    return parser


def _common_options(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "-c",
        "--config",
        metavar="PATH",
        default=default,
        help="schedule.yaml to use (default: $PUBLISHER_CONFIG or ./schedule.yaml)",
    )
    parser.add_argument(
        "--debug", action="store_true", default=default, help="show tracebacks of errors"
    )


def _now(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--now: '{text}' is not an ISO 8601 date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _print_problems(report: BuildReport) -> None:
    for problem in report.warnings:
        print(_warning(problem), file=sys.stderr)
    for problem in report.skipped:
        print(f"{problem} (article skipped)", file=sys.stderr)


def _warning(problem: Problem) -> str:
    place = problem.path if problem.line is None else f"{problem.path}:{problem.line}"
    return f"{place}: warning: {problem.where}: {problem.what}"


def _check(pub: Publication, args: argparse.Namespace, now: datetime) -> int:
    report = build(pub, now, write=False)
    _print_problems(report)
    articles = load_articles(pub, report.published)
    lint_warnings = 0
    for digest in pub.config.digests:
        # Every digest is rendered with sample data: all published articles, a sample
        # recipient. Template errors are reported like config errors.
        issue = compose_issue(pub, digest, articles[: digest.max_articles] or [], 1,
                              Window(None, now), now)  # fmt: skip
        # The settings sending needs (unsubscribe URL, DKIM key) are checked here too.
        prepare(pub, issue, Signer([PREVIEW_KEY]))
        for warning in issue.warnings:
            print(f"{pub.config.templates}/{digest.template}: warning: {warning}", file=sys.stderr)
        lint_warnings += len(issue.warnings)
    print(
        f"{pub.path.name}: ok; {len(report.published)} article(s) publishable, "
        f"{len(report.skipped)} skipped, {len(report.warnings) + lint_warnings} warning(s), "
        f"{len(pub.config.digests)} digest(s) rendered"
    )
    return 1 if report.skipped else 0


def _preview(pub: Publication, args: argparse.Namespace, now: datetime) -> int:
    try:
        digest = pub.config.digest(args.digest)
    except KeyError as exc:
        print(f"{pub.path.name}: digests: {exc.args[0]}", file=sys.stderr)
        return 1
    report = build(pub, now, write=False)
    articles = select_articles(load_articles(pub, report.published), digest, Window(None, now))
    issue = compose_issue(pub, digest, articles, 1, Window(None, now), now)
    letters = prepare(pub, issue, _signer(pub, preview=True))
    message = letters.render(SAMPLE_RECIPIENT)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    values = {
        "name": SAMPLE_RECIPIENT.name,
        "unsubscribe_url": letters.unsubscribe_link(SAMPLE_RECIPIENT),
    }
    html = issue.html
    text = issue.text
    for slot, marker in issue.markers.items():
        html = html.replace(marker, escape(values[slot]))
        text = text.replace(marker, values[slot])
    (out / f"{digest.name}.eml").write_bytes(message)
    (out / f"{digest.name}.html").write_text(html, "utf-8")
    (out / f"{digest.name}.txt").write_text(text, "utf-8")
    for warning in issue.warnings:
        print(f"{digest.name}: warning: {warning}", file=sys.stderr)
    print(
        f"{out}/{digest.name}.eml: issue {issue.number} with {len(articles)} article(s), "
        f"{len(message):,} bytes; {len(issue.warnings)} warning(s)"
    )
    return 0


def _subscribers(pub: Publication, args: argparse.Namespace, now: datetime) -> int:
    from publisher import store, subscribers

    engine = store.connect(pub.database_url)
    stamp = now.timestamp()
    list_name = args.list_name
    try:
        if args.action == "import":
            with engine.begin() as db:
                report = subscribers.import_csv(db, Path(args.file), list_name, stamp)
            for problem in report.problems:
                print(f"{problem} (row skipped)", file=sys.stderr)
            print(
                f"{list_name}: {report.added} added, {report.unchanged} already subscribed, "
                f"{len(report.problems)} row(s) refused"
            )
            return 1 if report.problems else 0
        if args.action in ("add", "remove"):
            try:
                address = subscribers.normalize_address(args.address)
            except ValueError as exc:
                print(f"{args.address}: {exc}", file=sys.stderr)
                return 1
            with engine.begin() as db:
                if args.action == "add":
                    changed = store.add_subscriber(
                        db, address, clean_text(args.name), list_name, stamp
                    )
                else:
                    changed = store.remove_subscriber(db, address, list_name, stamp)
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
            {"email": m.address, "name": m.name, "status": subscribers.status_of(m)} for m in rows
        ]
        if args.json:
            print(json.dumps(listed, indent=2, ensure_ascii=False))
        else:
            for entry in listed:
                print(f"{entry['email']}\t{entry['name']}\t{entry['status']}")
        return 0
    finally:
        engine.dispose()


SAMPLE_RECIPIENT = Recipient("sam@example.com", "Sam Example", "preview")
PREVIEW_KEY = b"preview-key-not-for-sending-0000"


def _signer(pub: Publication, preview: bool = False) -> Signer:
    variable = pub.config.email.secret_env
    if preview and not os.environ.get(variable):
        # A preview needs a signed link to show, not a valid one.
        print(
            f"{pub.path.name}: warning: {variable} is not set; the preview's unsubscribe "
            "link is signed with a throw-away key",
            file=sys.stderr,
        )
        return Signer([PREVIEW_KEY])
    return signer_from_environment(variable, pub.path.name, pub.line_of("email", "secret_env"))


def _build(pub: Publication, args: argparse.Namespace, now: datetime) -> int:
    report = build(pub, now, jobs=args.jobs)
    if args.json:
        print(json.dumps(_report_json(report), indent=2, ensure_ascii=False))
    else:
        _print_problems(report)
        changed = sum(f.written for f in report.feeds)
        print(
            f"built {len(report.feeds)} feed file(s) ({changed} changed) from "
            f"{len(report.published)} article(s); "
            f"{report.rendered} read, {report.reused} from cache"
            + (f"; {len(report.skipped)} skipped" if report.skipped else "")
        )
    return 1 if report.skipped else 0


def _report_json(report: BuildReport) -> dict[str, Any]:
    def problem(p: Problem) -> dict[str, Any]:
        return {"path": p.path, "line": p.line, "where": p.where, "reason": p.what}

    return {
        "feeds": [
            {"path": f.path, "format": f.format, "items": f.items, "changed": f.written}
            for f in report.feeds
        ],
        "articles": len(report.published),
        "skipped": [problem(p) for p in report.skipped],
        "warnings": [problem(p) for p in report.warnings],
        "rendered": report.rendered,
        "reused": report.reused,
    }
