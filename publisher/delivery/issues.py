"""Which issue is sent, and what is in it: the next issue of a digest holds the published
articles none of its issues has sent yet, recorded in the ledger with the issue; its
messages; and the web page the archive keeps of it.

``next_issue`` is the one answer to "what would be sent now": `send` composes it, and
`preview`, `send --dry-run` and `send --test` show it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from publisher.build import build, load_articles
from publisher.config import Digest, Publication
from publisher.content.cache import Entry
from publisher.delivery.local import due_times, first_due
from publisher.digest.issue import Issue, Window, compose_issue, in_window, select_articles
from publisher.digest.personalize import Letters, prepare
from publisher.model import Article
from publisher.store import epoch, ledger, moment, zones_present
from publisher.tokens import Signer

log = logging.getLogger("publisher.run")


@dataclass(frozen=True)
class Plan:
    """What an issue is: its row, its window, when it was composed (the Date of its
    messages). Composing it again gives the same bytes."""

    issue_id: int
    number: int
    window: Window
    composed_at: datetime | None = None  # None: a confirmation issue, dated per message
    waiting: int = 0  # published articles it left for the next issue (max_articles)
    dropped: int = 0  # and those it passed over for good (overflow: drop)
    period: datetime | None = None  # the scheduled moment it is for (None: sent by hand)


@dataclass(frozen=True)
class NextIssue:
    """The issue `send` would compose at a moment: its number, window and articles, and
    the articles past ``max_articles`` (waiting for the next, or passed over for good)."""

    number: int
    window: Window
    articles: list[Article]
    waiting: list[str] = field(default_factory=list)
    passed_over: list[str] = field(default_factory=list)


def next_issue(
    engine: Engine,
    pub: Publication,
    digest: Digest,
    now: datetime,
    period: datetime | None = None,
) -> NextIssue | None:
    """The next issue of ``digest`` at ``now`` (for the scheduled ``period``: the
    articles published by then), or None when there is none to send: no time has passed
    since the last issue, or nothing new was published and the digest skips empty
    issues."""
    with engine.connect() as db:
        last = ledger.last_issue(db, digest.name)
        sent = ledger.sent_articles(db, digest.name)
    start = moment(last.window_end) if last is not None else None
    # What was published by the period; a local-time issue composed before its period
    # (its hour comes earlier in some zones) holds what was published by then.
    end = now if period is None or now.timestamp() < period.timestamp() else period
    if start is not None and start >= end:
        return None
    entries = candidates(engine, pub, now)
    chosen = select_articles(entries, digest, end, sent.slugs, moment(sent.until))
    # Chosen again once read: a file changed since the build may have changed its tags.
    read = select_articles(
        _read(engine, pub, chosen.chosen), digest, end, sent.slugs, moment(sent.until)
    )
    if not read.chosen and digest.skip_empty:
        return None
    rest = [entry.slug for entry in chosen.rest]
    return NextIssue(
        number=1 if last is None else last.number + 1,
        window=Window(start, end),
        articles=read.chosen,
        waiting=rest if digest.overflow == "wait" else [],
        passed_over=rest if digest.overflow == "drop" else [],
    )


def open_issue(
    engine: Engine,
    pub: Publication,
    digest: Digest,
    now: datetime,
    period: datetime | None = None,
) -> Plan | None:
    """The next issue of ``digest``, in the ledger with its articles and one row per
    recipient; None when there is none to send. An unfinished older issue does not stand
    in the way: each keeps its own rows, retries and lifetime. A scheduled issue names its
    ``period``: the database holds one issue per period, however many schedulers ask."""
    for _ in range(3):  # bounded: only a concurrent composer makes us look again
        upcoming = next_issue(engine, pub, digest, now, period)
        if upcoming is None:
            return None
        window = upcoming.window
        try:
            with engine.begin() as db:
                due = None
                if period is not None and (digest.deliver_at == "local" or digest.quiet):
                    # The zones the list's members have: a step per zone, not per member.
                    zones = zones_present(db, digest.list_name)
                    due = due_times(digest, period, now, zones, pub.zone_of(digest.schedule))
                issue_id = ledger.create_issue(
                    db, digest.name, digest.list_name, upcoming.number,
                    (None if window.start is None else epoch(window.start), epoch(window.end)),
                    epoch(now), None if period is None else epoch(period),
                    [article.slug for article in upcoming.articles], upcoming.passed_over,
                    due,
                )  # fmt: skip
                recipients = sum(ledger.row_counts(db, issue_id).values())
        except IntegrityError:
            if period is not None and _has_period(engine, digest, period):
                return None  # another scheduler composed (and maybe sent) this period
            continue  # another process composed this number first: take theirs
        # One line of `publisher run`'s log (a command shows its own summary instead).
        log.info(
            "%s #%d composed: %d article(s) for %d recipient(s)%s", digest.name,
            upcoming.number, len(upcoming.articles), recipients,
            f"; {len(upcoming.waiting)} more wait" if upcoming.waiting else "",
        )  # fmt: skip
        return Plan(issue_id, upcoming.number, window, now, len(upcoming.waiting),
                    len(upcoming.passed_over), period)  # fmt: skip
    raise RuntimeError(f"could not open an issue of {digest.name}")


def _has_period(engine: Engine, digest: Digest, period: datetime) -> bool:
    with engine.connect() as db:
        return ledger.has_period(db, digest.name, epoch(period))


def last_period(engine: Engine, digest: Digest) -> datetime | None:
    """The latest scheduled period the ledger has an issue for."""
    with engine.connect() as db:
        return moment(ledger.last_period(db, digest.name))


def waiting_articles(db: Connection, pub: Publication, digest: Digest, now: datetime) -> int:
    """How many published articles are in no issue of the digest yet (what `status`
    shows): the next issue takes up to ``max_articles`` of them."""
    sent = ledger.sent_articles(db, digest.name)
    entries = _merged(list(build(pub, now, write=False).published), _upstream(db, pub))
    selection = select_articles(entries, digest, now, sent.slugs, moment(sent.until))
    return len(selection.chosen) + len(selection.rest)


def articles_of(engine: Engine, pub: Publication, digest: Digest, plan: Plan) -> list[Article]:
    """The articles an issue holds, as they read now, in the issue's order; an article
    removed since is left out. An issue from before articles were recorded holds those
    dated in its window."""
    with engine.connect() as db:
        slugs = ledger.issue_slugs(db, plan.issue_id)
    at = plan.composed_at or plan.window.end
    entries = candidates(engine, pub, max(at, plan.window.end))
    if slugs is None:
        return in_window(_read(engine, pub, in_window(entries, digest, plan.window)), digest,
                         plan.window)  # fmt: skip
    by_slug = {entry.slug: entry for entry in entries}
    return _read(engine, pub, [by_slug[slug] for slug in slugs if slug in by_slug])


def candidates(engine: Engine, pub: Publication, now: datetime) -> list[Entry | Article]:
    """What an issue may hold at ``now``: the build's records of the published articles,
    and the entries of the upstream feeds (sources:), as articles."""
    published: list[Entry | Article] = list(build(pub, now, write=False).published)
    if not pub.config.sources:
        return published
    with engine.connect() as db:
        return _merged(published, _upstream(db, pub))


def _merged(published: list[Entry | Article], upstream: list[Article]) -> list[Entry | Article]:
    # A source the publication publishes itself is in the build already: each entry once.
    have = {item.slug for item in published}
    return published + [article for article in upstream if article.slug not in have]


def _upstream(db: Connection, pub: Publication) -> list[Article]:
    if not pub.config.sources:
        return []
    from publisher.content.upstream import upstream_article
    from publisher.store.upstream import shown_entries

    places = {source.name: (index, source) for index, source in enumerate(pub.config.sources)}
    return [
        upstream_article(pub, *places[found.source], found.first_seen, found.entry)
        for found in shown_entries(db, list(places))
    ]


def _read(engine: Engine, pub: Publication, chosen: list[Entry | Article]) -> list[Article]:
    """The full articles of ``chosen``, in order: files read again, upstream entries made
    from what their fetches recorded (one gone since is left out)."""
    from publisher.content.upstream import is_upstream

    files = iter(
        load_articles(pub, [c for c in chosen if isinstance(c, Entry) and not is_upstream(c.path)])
    )
    upstream: dict[str, Article] | None = None
    found: list[Article] = []
    for item in chosen:
        if not isinstance(item, Entry):
            found.append(item)
        elif not is_upstream(item.path):
            found.append(next(files))
        else:
            if upstream is None:
                with engine.connect() as db:
                    upstream = {article.slug: article for article in _upstream(db, pub)}
            if item.slug in upstream:
                found.append(upstream[item.slug])
    return found


def compose(
    engine: Engine, pub: Publication, digest: Digest, plan: Plan, now: datetime, signer: Signer
) -> Letters:
    """The issue's messages; its web page is kept for the archive the first time."""
    issue = compose_plan(engine, pub, digest, plan)
    letters = prepare(pub, issue, signer)
    keep_web_page(engine, pub, digest, plan, issue)
    period, composed = plan.period, plan.composed_at
    if period is None or composed is None or (digest.deliver_at != "local" and not digest.quiet):
        return letters
    own = pub.zone_of(digest.schedule)
    # A few hundred zones, each worked out once: the same moment its rows fell due.
    dated = functools.cache(lambda zone: first_due(digest, period, composed, zone, own))
    return dataclasses.replace(letters, dated=dated)


def compose_plan(engine: Engine, pub: Publication, digest: Digest, plan: Plan) -> Issue:
    """The issue of ``plan``: its recorded articles, dated when it was composed."""
    articles = articles_of(engine, pub, digest, plan)
    when = plan.composed_at or plan.window.end
    return compose_issue(pub, digest, articles, plan.number, plan.window, when)


def compose_next(
    engine: Engine, pub: Publication, digest: Digest, now: datetime
) -> tuple[NextIssue, Issue] | None:
    """The issue `send` would compose at ``now``, composed as it would be (same number,
    articles, date and bytes), and recorded nowhere; None when it would send none."""
    upcoming = next_issue(engine, pub, digest, now)
    if upcoming is None:
        return None
    articles = upcoming.articles
    issue = compose_issue(pub, digest, articles, upcoming.number, upcoming.window, now)
    return upcoming, issue


def web_page(pub: Publication, digest: Digest, plan: Plan, issue: Issue) -> str:
    """The issue as the archive shows it: as a recipient without a name gets it, rendered
    with ``archived`` (no personal footer), and with no one's unsubscribe link (a template
    that shows one anyway links to the sign-up page)."""
    when = plan.composed_at or plan.window.end
    page = compose_issue(pub, digest, issue.articles, plan.number, plan.window, when, True)
    return page.unnamed.html.replace(
        page.markers["unsubscribe_url"], pub.config.site.base_url + "subscribe"
    )


def keep_web_page(
    engine: Engine, pub: Publication, digest: Digest, plan: Plan, issue: Issue
) -> str:
    """The archived page of the issue, stored now with its subject if it was not (the
    first one stays)."""
    with engine.connect() as db:
        kept = ledger.kept_page(db, plan.issue_id)
    if kept is not None:
        return kept
    page = web_page(pub, digest, plan, issue)
    try:
        with engine.begin() as db:
            ledger.keep_page(db, plan.issue_id, page, issue.subject)
    except IntegrityError:  # composed at the same moment elsewhere: the same page
        pass
    return page
