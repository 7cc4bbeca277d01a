"""Which issue is sent, and what is in it: a new issue for the window after the last one,
its articles, its messages, and the web page the archive keeps of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from publisher.build import build, load_articles
from publisher.config import Digest, Publication
from publisher.digest.issue import Issue, Window, compose_issue, select_articles
from publisher.digest.personalize import Letters, prepare
from publisher.model import Article
from publisher.store import epoch, ledger, moment
from publisher.tokens import Signer


@dataclass(frozen=True)
class Plan:
    """What an issue is: its row, its window. Composing it again gives the same bytes."""

    issue_id: int
    number: int
    window: Window


def open_issue(
    engine: Engine,
    pub: Publication,
    digest: Digest,
    now: datetime,
    period: datetime | None = None,
) -> Plan | None:
    """A new issue of ``digest`` for the window after the last issue's, up to ``now``; None
    when the window is empty of time, or of articles and the digest skips empty issues.
    An unfinished older issue does not stand in the way: each keeps its own rows, retries
    and lifetime. A scheduled issue names its ``period``: its window ends there, and the
    database holds one issue per period, however many schedulers ask."""
    for _ in range(3):  # bounded: only a concurrent composer makes us look again
        with engine.begin() as db:
            last = ledger.last_issue(db, digest.name)
        start = moment(last.window_end) if last is not None else None
        end = period or now
        window = Window(start, end)
        if start is not None and start >= end:
            return None
        if not issue_articles(pub, digest, window, now) and digest.skip_empty:
            return None
        number = 1 if last is None else last.number + 1
        try:
            with engine.begin() as db:
                issue_id = ledger.create_issue(
                    db, digest.name, digest.list_name, number,
                    (None if window.start is None else epoch(window.start), epoch(window.end)),
                    epoch(now), None if period is None else epoch(period),
                )  # fmt: skip
        except IntegrityError:
            if period is not None and _has_period(engine, digest, period):
                return None  # another scheduler composed (and maybe sent) this period
            continue  # another process composed this number first: take theirs
        return Plan(issue_id, number, window)
    raise RuntimeError(f"could not open an issue of {digest.name}")


def end_of(row: object) -> datetime:
    end = moment(getattr(row, "window_end"))  # noqa: B009 - a Row attribute
    assert end is not None
    return end


def _has_period(engine: Engine, digest: Digest, period: datetime) -> bool:
    with engine.connect() as db:
        return ledger.has_period(db, digest.name, epoch(period))


def last_period(engine: Engine, digest: Digest) -> datetime | None:
    """The latest scheduled period the ledger has an issue for."""
    with engine.connect() as db:
        return moment(ledger.last_period(db, digest.name))


def issue_articles(
    pub: Publication, digest: Digest, window: Window, now: datetime
) -> list[Article]:
    """The articles of the issue for ``window``: chosen from the build's small records
    first, so only the few articles that can be in the issue are read again from their
    files (reading all 10,000 of a large publication cost 5 s per issue). Chosen again
    once read: a file changed since the build may have moved out of the window."""
    entries = select_articles(build(pub, now, write=False).published, digest, window)
    return select_articles(load_articles(pub, entries), digest, window)


def compose(
    engine: Engine, pub: Publication, digest: Digest, plan: Plan, now: datetime, signer: Signer
) -> Letters:
    """The issue's messages; its web page is kept for the archive the first time."""
    articles = issue_articles(pub, digest, plan.window, now)
    issue = compose_issue(pub, digest, articles, plan.number, plan.window, plan.window.end)
    letters = prepare(pub, issue, signer)
    keep_web_page(engine, plan.issue_id, issue)
    return letters


def web_page(issue: Issue) -> str:
    """The issue without per-recipient parts: no name, and no one's unsubscribe link."""
    return issue.html.replace(issue.markers["name"], "reader").replace(
        issue.markers["unsubscribe_url"], "/subscribe"
    )


def keep_web_page(engine: Engine, issue_id: int, issue: Issue) -> str:
    """The archived page of the issue, stored now if it was not (the first one stays)."""
    with engine.connect() as db:
        kept = ledger.kept_page(db, issue_id)
    if kept is not None:
        return kept
    page = web_page(issue)
    try:
        with engine.begin() as db:
            ledger.keep_page(db, issue_id, page)
    except IntegrityError:  # composed at the same moment elsewhere: the same page
        pass
    return page
