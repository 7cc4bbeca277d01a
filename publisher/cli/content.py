"""``publisher check``, ``build`` and ``preview``: articles, feeds and the look of a digest."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from publisher.build import BuildReport, build, load_articles
from publisher.cli.common import PREVIEW_KEY, SAMPLE_RECIPIENT, print_problems, signer
from publisher.config import Publication
from publisher.errors import Problem

# What check and preview need (the digest, the delivery station, the web pages) is imported
# by them: a build, run every few minutes by the scheduler or cron, does not load it.


def check(pub: Publication, args: argparse.Namespace, now: datetime) -> int:
    from publisher import confirm as confirmation
    from publisher.backends import checked_backend
    from publisher.delivery import Plan
    from publisher.digest.issue import Window, compose_issue
    from publisher.digest.personalize import prepare
    from publisher.feeds.files import newest
    from publisher.tokens import Signer

    report = build(pub, now, write=False)
    print_problems(report)
    most = max((d.max_articles for d in pub.config.digests), default=0)
    # Sample data: the newest articles (only those are read again), a sample recipient.
    articles = load_articles(pub, newest(report.published, most)) if most else []
    lint_warnings = 0
    for digest in pub.config.digests:
        # Template errors are reported like config errors.
        sample = articles[: digest.max_articles]
        issue = compose_issue(pub, digest, sample, 1, Window(None, now), now)
        # The settings sending needs (unsubscribe URL, DKIM key) are checked here too.
        prepare(pub, issue, Signer([PREVIEW_KEY]))
        for warning in issue.warnings:
            print(f"{pub.config.templates}/{digest.template}: warning: {warning}", file=sys.stderr)
        lint_warnings += len(issue.warnings)
    if pub.config.website.enabled:
        from publisher.site.render import SiteRenderer

        SiteRenderer(pub).check()  # the site's templates, with a sample article
    if pub.config.digests:
        checked_backend(pub)  # its options, with their lines (nothing is connected)
        variable = pub.config.email.secret_env
        if not os.environ.get(variable):
            line = pub.line_of("email", "secret_env") or pub.line_of("email")
            place = pub.path.name if line is None else f"{pub.path.name}:{line}"
            print(f"{place}: warning: email.secret_env: {variable} is not set: send, run and "
                  "serve refuse to start without the secret that signs unsubscribe links",
                  file=sys.stderr)  # fmt: skip
            lint_warnings += 1
        # The double opt-in mail of the web side, from its template.
        sample_plan = Plan(0, 0, Window(None, now))
        confirmation.mail(pub, Signer([PREVIEW_KEY]), sample_plan, now).render(SAMPLE_RECIPIENT)
        from publisher.web.pages import Pages  # the pages of `publisher serve`

        Pages(pub).check()
    print(
        f"{pub.path.name}: ok; {len(report.published)} article(s) publishable, "
        f"{len(report.skipped)} skipped, {len(report.warnings) + lint_warnings} warning(s), "
        f"{len(pub.config.digests)} digest(s) rendered"
    )
    return 1 if report.skipped else 0


def preview(pub: Publication, args: argparse.Namespace, now: datetime) -> int:
    """The issue `send` would send at ``now``, for the sample recipient."""
    from publisher import store
    from publisher.delivery import compose_next
    from publisher.digest.personalize import prepare

    digest = pub.digest(args.digest)
    engine = store.open_database(pub)
    try:
        found = compose_next(engine, pub, digest, now)
    finally:
        engine.dispose()
    if found is None:
        print(f"{digest.name}: nothing new to send at {now.isoformat()}: every published "
              "article is in an issue already; no preview written")  # fmt: skip
        return 0
    upcoming, issue = found
    letters = prepare(pub, issue, signer(pub, preview=True))
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
    waiting = (f"; {len(upcoming.waiting)} more article(s) wait for the next issue"
               if upcoming.waiting else "")  # fmt: skip
    print(
        f"{out}/{digest.name}.eml: issue {issue.number} with {len(issue.articles)} "
        f"article(s), {len(message):,} bytes; {len(issue.warnings)} warning(s){waiting}"
    )
    return 0


def build_feeds(pub: Publication, args: argparse.Namespace, now: datetime) -> int:
    report = build(pub, now, jobs=args.jobs)
    if args.json:
        print(json.dumps(_report_json(report), indent=2, ensure_ascii=False))
    else:
        print_problems(report)
        changed = sum(f.written for f in report.feeds)
        print(
            f"built {len(report.feeds)} feed file(s) ({changed} changed) from "
            f"{len(report.published)} article(s); "
            f"{report.rendered} read, {report.reused} from cache"
            + (f"; {len(report.skipped)} skipped" if report.skipped else "")
        )
        if report.site is not None:
            site = report.site
            print(
                f"site: {site.pages} page(s) ({site.written} written), {site.files} file(s) "
                f"({site.copied} copied)"
                + (f", {site.removed} removed" if site.removed else "")
                + f" in {pub.config.website.folder}/"
            )
        told = [ping for ping in report.pings if ping.ok]
        if report.pings:
            print(f"websub: {len(told)} of {len(report.pings)} hub(s) told of the changed feeds")
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
        "site": None if report.site is None else dataclasses.asdict(report.site),
        "hubs": [dataclasses.asdict(ping) for ping in report.pings],
    }
