"""What the operator wants to know of each digest: list size, next run, the last issues
with their ledger counts — never an address. Shared by `publisher status` and the web
status page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy.engine import Connection

from publisher import store
from publisher.config import Digest, Publication
from publisher.delivery.issues import waiting_articles
from publisher.delivery.local import hours_ahead
from publisher.localtime import zone_of
from publisher.store import ledger
from publisher.store import returns as returned

STATUSES = ("sent", "deferred", "failed", "pending", "skipped")


def next_run(
    pub: Publication, digest: Digest, now: datetime, zones: list[tzinfo] | None = None
) -> str | None:
    """When the digest's next issue is composed: its next fire time, or for a local-time
    digest, when that hour comes in the first of the subscribers' ``zones``."""
    from publisher.scheduler.triggers import CronSchedule, LocalStart, runs, trigger

    if digest.schedule is None:
        return None
    fires = trigger(pub, digest.schedule)
    if digest.deliver_at == "local" and isinstance(fires, CronSchedule):
        found = next(LocalStart(fires, lambda: zones or []).starts(now), None)
        return None if found is None else found[1].astimezone(fires.timezone).isoformat()
    upcoming = next(runs(fires, now, now + timedelta(days=400)), None)
    return None if upcoming is None else upcoming.isoformat()


def digest_overview(
    db: Connection, pub: Publication, digest: Digest, now: datetime
) -> dict[str, Any]:
    recent: list[dict[str, Any]] = []
    newer: float | None = None  # when the issue after this one was composed
    spread = digest.deliver_at == "local" or digest.quiet is not None
    for row in ledger.latest_issues(db, digest.name, 5):
        counts = ledger.row_counts(db, row.id)
        # A local-time issue being sent: its rows by the hour they fall due, a day ahead.
        hours = []
        if spread and row.status == "sending":
            pairs = ledger.due_times(db, row.id, now.timestamp() + 86400)
            hours = [count.as_dict() for count in hours_ahead(pairs, now.timestamp())]
        came_back = returned.counts(db, row.id)
        unsubscribes = returned.unsubscribed_after(db, row.id, digest.list_name,
                                                   row.created_at, newer)  # fmt: skip
        newer = row.created_at
        end = store.moment(row.window_end)
        recent.append(
            {
                "number": row.number,
                "status": row.status,
                "window_end": None if end is None else end.isoformat(),
                **{key: counts.get(key, 0) for key in STATUSES},
                # Rows a sender holds right now (claimed, being sent).
                "sending": counts.get("sending", 0),
                "reason": row.paused_reason,  # why a paused issue is paused
                # What came back (bounces after the server accepted, complaints) and who
                # of its recipients unsubscribed before the next issue.
                "bounces": {"hard": came_back["hard"], "soft": came_back["soft"]},
                "complaints": came_back["complaint"],
                "unsubscribes": unsubscribes,
                "due_by_hour": hours,
                # Why rows wait or failed: the most frequent last replies.
                "why": [
                    {"status": status, "reply": reply, "rows": rows}
                    for status, reply, rows in ledger.reasons(db, row.id)
                ],
            }
        )
    zones = None
    if digest.deliver_at == "local":
        own = pub.zone_of(digest.schedule)
        zones = [zone_of(name, own) for name in store.zones_present(db, digest.list_name)]
    return {
        "digest": digest.name,
        "list": digest.list_name,
        "subscribers": store.count_active(db, digest.list_name),
        "next_run": next_run(pub, digest, now, zones),
        # Published articles in no issue yet; the next issue takes up to max_articles.
        "articles_waiting": waiting_articles(db, pub, digest, now),
        "max_articles": digest.max_articles,
        # Why the digest is held (its complaint or bounce rate), None when it is not.
        "held": returned.held(db, digest.name),
        "issues": recent,
    }


def confirmation_overview(db: Connection, now: datetime) -> dict[str, int]:
    """The double opt-in of the last 7 days: its mails by ledger status, and the people
    who have not confirmed yet."""
    from publisher.confirm import CONFIRMATIONS

    since = store.epoch(now - timedelta(days=7))
    counts = ledger.row_counts_since(db, CONFIRMATIONS, since)
    waiting = ledger.unconfirmed_people(db)
    return {**{key: counts.get(key, 0) for key in STATUSES[:4]}, "unconfirmed": waiting}


def confirmation_line(entry: dict[str, int]) -> str:
    counts = ", ".join(f"{key} {entry[key]}" for key in STATUSES[:4])
    return f"confirmation mails, last 7 days: {counts}; {entry['unconfirmed']} not confirmed yet"


def sources_overview(db: Connection, pub: Publication) -> list[dict[str, Any]]:
    """Each source of schedule.yaml: its last fetch (when, the HTTP status, what went
    wrong), the entries it brought, those recorded and held back, and its next fetch."""
    from publisher.store.upstream import SourceState, entry_counts, source_states

    states = source_states(db)
    counts = entry_counts(db)
    found = []
    for source in pub.config.sources:
        state = states.get(source.name)
        if state is None or state.configured_url != source.url:  # not fetched at this URL
            state = SourceState(source.name, source.url, source.url)
        shown, held = counts.get(source.name, (0, 0))
        found.append({
            "source": source.name, "url": state.url, "last_fetch": _iso(state.fetched_at),
            "status": state.status, "error": state.error, "new_entries": state.new_entries,
            "entries": shown, "held": held, "gone": state.gone_at is not None,
            "next_fetch": _iso(state.next_fetch_at) if state.fetched_at is not None else None,
        })  # fmt: skip
    return found


SEEN_SECONDS = 3600.0  # workers that started a task this recently are shown


def workers_overview(db: Connection, now: datetime) -> dict[str, Any]:
    """The scheduler on duty, the tasks queued and running, and each worker seen in the
    last hour with what its tasks did."""
    from publisher.scheduler.duty import ROLE
    from publisher.store import tasks

    at = store.epoch(now)
    counts = tasks.overview(db, at, at - SEEN_SECONDS)
    duty = tasks.on_duty(db, ROLE, at)
    return {
        "on_duty": None if duty is None else {"scheduler": duty[0], "since": _iso(duty[1])},
        "tasks_queued": counts.queued, "tasks_running": counts.running,
        "workers": [
            {"worker": w.worker, "last_seen": _iso(w.last_seen), "tasks": w.tasks,
             "running": w.busy, "sent": w.sent, "deferred": w.deferred, "failed": w.failed}
            for w in counts.workers
        ],
    }  # fmt: skip


def workers_lines(entry: dict[str, Any]) -> list[str]:
    duty = entry["on_duty"]
    lines = [f"scheduler on duty: {duty['scheduler']} since {duty['since']}"] if duty else []
    lines.append(f"workers: {entry['tasks_queued']} task(s) queued, {entry['tasks_running']} "
                 f"running; {len(entry['workers'])} worker(s) seen in the last hour")  # fmt: skip
    for w in entry["workers"]:
        lines.append(f"  {w['worker']}: {w['tasks']} task(s), {w['running']} running; sent "
                     f"{w['sent']}, deferred {w['deferred']}, failed {w['failed']}; last "
                     f"seen {w['last_seen']}")  # fmt: skip
    return lines


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()


def source_line(entry: dict[str, Any]) -> str:
    if entry["last_fetch"] is None:
        return f"source {entry['source']}: not fetched yet ({entry['url']})"
    how = f"HTTP {entry['status']}" if entry["status"] is not None else "no answer"
    if entry["error"]:
        how += f": {entry['error']}"
    then = "gone: not fetched again" if entry["gone"] else f"next fetch {entry['next_fetch']}"
    held = f", {entry['held']} held back" if entry["held"] else ""
    return (
        f"source {entry['source']}: last fetch {entry['last_fetch']} ({how}), "
        f"{entry['new_entries']} new; {entry['entries']} entries{held}; {then}"
    )
