"""What the command handlers share: the sample recipient, the token signer, output."""

from __future__ import annotations

import os
import sys

from publisher.build import BuildReport
from publisher.config import Publication
from publisher.digest.personalize import Recipient
from publisher.errors import Problem
from publisher.tokens import Signer, publication_signer

SAMPLE_RECIPIENT = Recipient("sam@example.com", "Sam Example", "preview")
PREVIEW_KEY = b"preview-key-not-for-sending-0000"


def signer(pub: Publication, preview: bool = False) -> Signer:
    variable = pub.config.email.secret_env
    if preview and not os.environ.get(variable):
        # A preview needs a signed link to show, not a valid one.
        print(
            f"{pub.path.name}: warning: {variable} is not set; the preview's unsubscribe "
            "link is signed with a throw-away key",
            file=sys.stderr,
        )
        return Signer([PREVIEW_KEY])
    return publication_signer(pub)


def print_problems(report: BuildReport) -> None:
    for problem in report.warnings:
        print(_warning(problem), file=sys.stderr)
    for problem in report.skipped:
        print(f"{problem} (article skipped)", file=sys.stderr)
    for ping in report.pings:
        if not ping.ok:
            print(f"feeds.hubs: warning: {ping.hub} was not told of the changed feeds "
                  f"({ping.attempts} attempt(s)): {ping.answer}", file=sys.stderr)  # fmt: skip


def _warning(problem: Problem) -> str:
    place = problem.path if problem.line is None else f"{problem.path}:{problem.line}"
    return f"{place}: warning: {problem.where}: {problem.what}"
