"""The command line: the contract scripts and operators rely on.

Exit status: 0 success, 1 a reported problem (one ``where: what`` line each on stderr),
2 a usage error. With ``--json`` a command prints one JSON document on stdout and nothing
else there. This is the only layer that reads the clock.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from publisher import __version__
from publisher.config import config_path, list_name_rule, load_config
from publisher.errors import PublisherError


def _list_name(value: str) -> str:
    """The rule digest names and lists follow in schedule.yaml."""
    try:
        return list_name_rule(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        days = 0
    if not 1 <= days <= 3660:
        raise argparse.ArgumentTypeError(f"'{value}' is not a number of days from 1 to 3660")
    return days


AHEAD = timedelta(days=1)  # how far ahead of the clock --now may be without --force


def _acts(args: argparse.Namespace) -> bool:
    """Whether the command records or publishes at ``--now`` (build, send, run --once), as
    opposed to looking (check, preview, plan, send --dry-run or --test)."""
    if args.command == "send":
        return not (args.dry_run or args.test)
    return args.command in ("build", "run")


def _ahead(by: timedelta) -> str:
    days = by.total_seconds() / 86400
    return (
        f"{days / 365.25:.0f} years"
        if days >= 730
        else f"{days:.0f} days"
        if days >= 2
        else f"{by.total_seconds() / 3600:.0f} hours"
    )


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"'{value}' is not a port number from 1 to 65535")
    return port


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    clock = datetime.now(UTC)
    try:
        now = _now(args.now) if getattr(args, "now", None) else clock
    except ValueError as exc:
        parser.error(str(exc))
    if _acts(args) and now - clock > AHEAD and not args.force:
        # A typo of a year would publish and send what is not due yet, and leave the
        # digest with nothing new until that date.
        parser.error(
            f"--now: {now.isoformat()} is {_ahead(now - clock)} ahead of the clock; "
            f"{args.command} would publish {'' if args.command == 'build' else 'and send '}"
            "articles not due yet (give --force if you mean it)"
        )
    try:
        pub = load_config(config_path(args.config))
        status: int = _handler(args.handler)(pub, args, now)
        return status
    except PublisherError as exc:
        if args.debug:
            traceback.print_exc()
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `publisher plan | head`: the reader left; say nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        # A fault of ours, not of the input: one line for the operator, the traceback on
        # request, and a non-zero exit; nothing is hidden.
        if args.debug:
            raise
        from sqlalchemy.exc import SQLAlchemyError

        if isinstance(exc, SQLAlchemyError):
            # Locked, full, gone away: what was recorded before stays; a new run goes on.
            from publisher.store import database_reason

            print(
                f"state.database: {database_reason(exc)} (run the command again once the "
                "database is usable: what was recorded is kept)",
                file=sys.stderr,
            )
            return 1
        print(
            f"publisher: internal error: {type(exc).__name__}: {exc} "
            "(run again with --debug for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1


def _handler(name: str) -> Any:
    """A command's function, its module imported only now: a `send` does not import the
    scheduler, the web side or the feed writer."""
    module, _, function = name.partition(":")
    return getattr(importlib.import_module(f"publisher.cli.{module}"), function)


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
    check.set_defaults(handler="content:check")

    build_cmd = commands.add_parser("build", parents=[common], help="write every feed")
    build_cmd.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    build_cmd.add_argument(
        "--now", metavar="ISO", help="publish what is due at this time (default: now)"
    )
    build_cmd.add_argument(
        "--jobs", type=int, metavar="N", help="processes for reading articles (default: cores)"
    )
    _force(build_cmd)
    build_cmd.set_defaults(handler="content:build_feeds")

    preview = commands.add_parser(
        "preview", parents=[common], help="write a digest issue for a sample recipient"
    )
    preview.add_argument("digest", metavar="DIGEST", help="the digest's name in schedule.yaml")
    preview.add_argument("--out", required=True, metavar="DIR", help="folder for .eml/.html/.txt")
    preview.add_argument("--now", metavar="ISO", help="compose the issue due at this time")
    preview.set_defaults(handler="content:preview")

    subs = commands.add_parser("subscribers", parents=[common], help="manage subscriber lists")
    actions = subs.add_subparsers(dest="action", metavar="ACTION", required=True)
    importing = actions.add_parser(
        "import", parents=[common], help="add every address of a CSV file"
    )
    importing.add_argument("file", metavar="FILE.csv")
    adding = actions.add_parser("add", parents=[common], help="subscribe one address")
    adding.add_argument("address", metavar="EMAIL")
    adding.add_argument("--name", default="", help="the subscriber's name")
    adding.add_argument(
        "--timezone", metavar="ZONE",
        help="their IANA time zone (Europe/Berlin): deliver_at: local digests arrive at "
        "their local hour",
    )  # fmt: skip
    adding.add_argument(
        "--resubscribe", action="store_true",
        help="subscribe again an address that unsubscribed (only if they asked you to)",
    )  # fmt: skip
    removing = actions.add_parser("remove", parents=[common], help="unsubscribe one address")
    removing.add_argument("address", metavar="EMAIL")
    listing = actions.add_parser("list", parents=[common], help="show a list's subscribers")
    listing.add_argument("--json", action="store_true", help="print JSON on stdout")
    actions.add_parser("export", parents=[common], help="write a list as CSV on stdout")
    for action in (importing, adding, removing, listing, *[actions.choices["export"]]):
        action.add_argument("--list", required=True, dest="list_name", metavar="NAME",
                            type=_list_name)  # fmt: skip
    subs.set_defaults(handler="mail:subscribers_command")

    upstream = commands.add_parser(
        "sources", parents=[common], help="fetch upstream feeds (schedule.yaml's sources:)"
    )
    upstream_actions = upstream.add_subparsers(dest="action", metavar="ACTION", required=True)
    fetching = upstream_actions.add_parser(
        "fetch", parents=[common], help="fetch the sources that are due, record new entries"
    )
    fetching.add_argument("--all", action="store_true", help="every source, due or not")
    fetching.add_argument("--now", metavar="ISO", help="the moment to act at (default: now)")
    _force(fetching)
    importing_opml = upstream_actions.add_parser(
        "import", parents=[common], help="add the feeds of an OPML file to schedule.yaml"
    )
    importing_opml.add_argument("file", metavar="FILE.opml")
    releasing = upstream_actions.add_parser(
        "release", parents=[common], help="publish a source's entries held back"
    )
    releasing.add_argument("source", metavar="NAME", help="the source's name in schedule.yaml")
    upstream.set_defaults(handler="sources:sources_command")

    bounces = commands.add_parser(
        "bounces", parents=[common], help="returned mail: bounces, complaints, unsubscribes"
    )
    bounce_actions = bounces.add_subparsers(dest="action", metavar="ACTION", required=True)
    reading = bounce_actions.add_parser(
        "fetch", parents=[common], help="read the return mailbox once and act on it"
    )
    reading.add_argument("--now", metavar="ISO", help="the moment to act at (default: now)")
    reading.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    _force(reading)
    resuming = bounce_actions.add_parser(
        "resume", parents=[common], help="send a digest held for its complaint or bounce rate"
    )
    resuming.add_argument("digest", metavar="DIGEST")
    bounces.set_defaults(handler="returns:bounces_command")

    send = commands.add_parser(
        "send", parents=[common], help="deliver the issue of a digest due now"
    )
    send.add_argument("digest", metavar="DIGEST")
    send.add_argument("--now", metavar="ISO", help="compose the issue due at this time")
    send.add_argument(
        "--dry-run", action="store_true", help="compose and count; send and record nothing"
    )
    send.add_argument(
        "--test", metavar="ADDRESS", help="send the issue to this address only; record nothing"
    )
    send.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    _force(send)
    send.set_defaults(handler="mail:send")

    status = commands.add_parser(
        "status", parents=[common], help="issues and their delivery counts"
    )
    status.add_argument("--json", action="store_true", help="print JSON on stdout")
    status.add_argument("--now", metavar="ISO", help="the moment to report at (default: now)")
    status.set_defaults(handler="mail:status")
    run = commands.add_parser("run", parents=[common], help="the scheduler, in the foreground")
    run.add_argument("--once", action="store_true", help="do what is due now, then exit")
    run.add_argument("--now", metavar="ISO", help="with --once: the moment to act at")
    _force(run)
    run.set_defaults(handler="running:run")

    worker = commands.add_parser(
        "worker", parents=[common], help="a delivery worker (workers: in schedule.yaml)"
    )
    worker.set_defaults(handler="running:worker")

    serve = commands.add_parser(
        "serve", parents=[common], help="the web side: sign-up, unsubscribe, archive, feeds"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8000, help="port, 1-65535 (8000)")
    serve.set_defaults(handler="running:serve")

    planned = commands.add_parser("plan", parents=[common], help="the next runs of every job")
    planned.add_argument("--days", type=_days, default=7, metavar="N",
                         help="how far ahead, 1-3660 (7)")  # fmt: skip
    planned.add_argument("--json", action="store_true", help="print JSON on stdout")
    planned.add_argument("--now", metavar="ISO", help="plan from this moment")
    planned.set_defaults(handler="running:plan_command")
    return parser


def _force(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force", action="store_true", help="accept a --now more than a day ahead of the clock"
    )


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
