"""Each subscriber's copy at the digest's hour in their own time zone (deliver_at: local),
quiet hours, and what `plan` and `status` say of such an issue: the time is injected, the
copies are counted at a real SMTP server by envelope recipient."""

from __future__ import annotations

import email
import functools
import json
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from email.utils import parsedate_to_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from publisher import store
from publisher.backends import backend_pool
from publisher.backends.maildir import MaildirBackend
from publisher.config import Publication, load_config
from publisher.delivery.local import zones_in_use
from publisher.localtime import QuietHours, compose_moment, wall_moment
from publisher.scheduler.jobs import next_retry, run_due
from publisher.scheduler.triggers import LocalStart, trigger
from publisher.tokens import Signer

from .conftest import Ran
from .postgres import needs_postgres, postgres_cluster
from .smtpserver import Script

KEY = Signer([b"local-time-test-key-0123456789ab"])
SATURDAY = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)  # the Monday after is 2026-11-30
# Where the subscribers live; None: no zone given (the digest's own, London).
PEOPLE = {
    "kiri@example.org": "Pacific/Kiritimati",  # UTC+14: the first to reach Monday 08:00
    "asha@example.org": "Asia/Kolkata",  # UTC+5:30
    "bea@example.org": "Europe/Berlin",
    "ned@example.org": "America/New_York",
    "lou@example.org": "America/Los_Angeles",
    "otto@example.org": None,
}
LONDON = ZoneInfo("Europe/London")


def publication(example: Path, port: int, digest: str) -> Publication:
    config = example / "schedule.yaml"
    text = config.read_text().replace(
        "backend:\n  type: maildir\n  path: outbox",
        f"backend:\n  type: smtp\n  host: 127.0.0.1\n  port: {port}\n  tls: none",
    )
    anchor = "      max_lateness: 7d      # ...if it is at most a week late\n"
    assert anchor in text
    config.write_text(text.replace(anchor, anchor + digest))
    return with_people(load_config(config))


def with_people(pub: Publication) -> Publication:
    """``pub`` with PEOPLE subscribed to its weekly list, each in their zone."""
    engine = store.connect(pub.database_url)
    with engine.begin() as db:
        for address, zone in PEOPLE.items():
            store.add_subscriber(db, address, "", "weekly", 0.0, timezone=zone)
    engine.dispose()
    return pub


def arrivals(pub: Publication, script: Script, start: datetime) -> dict[str, list[datetime]]:
    """Run `publisher run`'s passes as its scheduler would, on an injected clock that jumps
    to whatever comes first: the digest's next compose moment or the next due row. What
    the server received during a pass arrived at that pass's moment."""
    engine = store.connect(pub.database_url)
    digest = pub.digest("weekly")
    assert digest.schedule is not None
    starts = LocalStart(trigger(pub, digest.schedule),
                        lambda: zones_in_use(engine, digest, LONDON))  # fmt: skip
    seen: dict[str, list[datetime]] = {}
    now = start
    try:
        for _ in range(20):  # bounded: one pass per zone's hour, and a few more
            composing = starts.get_next_fire_time(None, now)
            due = next_retry(pub, engine)
            moments = [m for m in (composing, due and datetime.fromtimestamp(due, UTC)) if m]
            later = [m for m in moments if m.timestamp() > now.timestamp()]
            if not later or min(later) > start + timedelta(days=3):
                break
            now = min(later, key=lambda m: m.timestamp()).astimezone(UTC)
            before = len(script.received)
            run_due(pub, engine, now, KEY, lambda: backend_pool(pub), build_feeds=False,
                    clock=now.timestamp)  # fmt: skip
            for _, recipient, _ in script.received[before:]:
                seen.setdefault(recipient, []).append(now)
    finally:
        engine.dispose()
    return seen


def dated(script: Script) -> dict[str, datetime]:
    """The Date header of the copy each envelope recipient received."""
    found = {}
    for _, recipient, data in script.received:
        head = email.message_from_bytes(data)
        found[recipient] = parsedate_to_datetime(str(head["Date"]))
    return found


def test_each_copy_arrives_at_eight_in_its_zone(
    example: Path, server: tuple[int, Script], caplog: pytest.LogCaptureFixture
) -> None:
    port, script = server
    pub = publication(example, port, "    deliver_at: local\n")
    with caplog.at_level(logging.INFO, "publisher.run"):
        seen = arrivals(pub, script, SATURDAY)
    assert Counter(rcpt for _, rcpt, _ in script.received) == Counter(set(PEOPLE))  # once each
    dates = dated(script)
    for address, zone in PEOPLE.items():
        eight = datetime(2026, 11, 30, 8, 0, tzinfo=ZoneInfo(zone) if zone else LONDON)
        (arrived,) = seen[address]
        assert timedelta(0) <= arrived - eight <= timedelta(seconds=60), (address, arrived)
        # Dated at their 08:00 too, not at the compose the day before (clients sort by it).
        assert dates[address] == eight, address
    # One issue, composed once (when Monday 08:00 came at UTC+14), one archive page.
    composed = [r.getMessage() for r in caplog.records if "composed" in r.getMessage()]
    assert composed == ["weekly #1 composed: 10 article(s) for 6 recipient(s)"]
    engine = store.connect(pub.database_url)
    with engine.connect() as db:
        issues = db.execute(select(store.issues)).all()
        pages = db.execute(select(func.count()).select_from(store.archive)).scalar()
    engine.dispose()
    assert [(i.digest, i.number, i.status) for i in issues] == [("weekly", 1, "done")]
    assert datetime.fromtimestamp(issues[0].created_at, UTC) == datetime(
        2026, 11, 29, 18, 0, tzinfo=UTC
    )
    assert pages == 1


def test_a_zone_changed_after_the_compose_dates_no_copy_ahead(
    example: Path, server: tuple[int, Script]
) -> None:
    port, script = server
    pub = publication(example, port, "    deliver_at: local\n")
    engine = store.connect(pub.database_url)
    composed = datetime(2026, 11, 29, 18, 0, tzinfo=UTC)  # Monday 08:00 at UTC+14
    kolkata = datetime(2026, 11, 30, 8, 0, tzinfo=ZoneInfo("Asia/Kolkata"))
    try:
        for now in (composed, kolkata):
            run_due(pub, engine, now, KEY, lambda: backend_pool(pub), build_feeds=False,
                    clock=now.timestamp)  # fmt: skip
            if now == composed:  # asha moves to Los Angeles, her row queued for Kolkata
                with engine.begin() as db:
                    asha = next(m for m in store.members(db, "weekly")
                                if m.address == "asha@example.org")  # fmt: skip
                    store.set_zone(db, asha.public_id, "America/Los_Angeles")
    finally:
        engine.dispose()
    # Sent at her row's hour, dated then: not at 08:00 in Los Angeles, hours ahead.
    assert dated(script)["asha@example.org"] == kolkata


def passes(pub: Publication, script: Script, start: datetime) -> dict[str, list[datetime]]:
    """`publisher run`'s passes from ``start``, each when the next row is due, until none
    is: when each envelope recipient's copies arrived."""
    engine = store.connect(pub.database_url)
    seen: dict[str, list[datetime]] = {}
    now = start
    try:
        for _ in range(10):  # bounded: the schedule's pass, then each held row's
            before = len(script.received)
            run_due(pub, engine, now, KEY, lambda: backend_pool(pub), build_feeds=False,
                    clock=now.timestamp)  # fmt: skip
            for _, recipient, _ in script.received[before:]:
                seen.setdefault(recipient, []).append(now)
            due = next_retry(pub, engine)
            if due is None:
                break
            now = datetime.fromtimestamp(due, UTC)
    finally:
        engine.dispose()
    return seen


def test_quiet_hours_hold_a_copy_until_they_end(example: Path, server: tuple[int, Script]) -> None:
    """Not local: everyone's copy at 08:00 London, except where that is in the night."""
    port, script = server
    pub = publication(example, port, '    quiet: "22:00-07:00"\n')
    monday = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    seen = passes(pub, script, monday)
    assert {address: [at] for address, at in dated(script).items()} == seen
    assert {address: times for address, times in seen.items()} == {
        # 22:00 at UTC+14, 03:00 and 00:00 in America: at 07:00 their time.
        "kiri@example.org": [datetime(2026, 11, 30, 17, 0, tzinfo=UTC)],
        "asha@example.org": [monday],  # 13:30
        "bea@example.org": [monday],  # 09:00
        "otto@example.org": [monday],  # 08:00
        "ned@example.org": [datetime(2026, 11, 30, 12, 0, tzinfo=UTC)],
        "lou@example.org": [datetime(2026, 11, 30, 15, 0, tzinfo=UTC)],
    }


def test_quiet_hours_hold_a_retry_too(example: Path, server: tuple[int, Script]) -> None:
    """08:00 London is 21:45 in the Chatham Islands (UTC+13:45): the first copy goes and
    is greylisted; its retry, half an hour on, would be at 22:15 there: at 07:00."""
    port, script = server
    config = publication(example, port, '    quiet: "22:00-07:00"\n').path
    config.write_text(config.read_text().replace("retry_first: 5m", "retry_first: 30m"))
    pub = load_config(config)
    engine = store.connect(pub.database_url)
    with engine.begin() as db:
        store.add_subscriber(db, "grey@example.org", "", "weekly", 0.0,
                             timezone="Pacific/Chatham")  # fmt: skip
    engine.dispose()
    seen = passes(pub, script, datetime(2026, 11, 30, 8, 0, tzinfo=UTC))
    assert seen["grey@example.org"] == [
        datetime(2026, 12, 1, 7, 0, tzinfo=ZoneInfo("Pacific/Chatham"))
    ]


def test_plan_and_status_show_the_rows_by_hour(
    example: Path, cli: Callable[..., Ran], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBLISHER_SECRET", "local-time-test-secret-0123456789")
    config = example / "schedule.yaml"
    anchor = "      max_lateness: 7d      # ...if it is at most a week late\n"
    config.write_text(config.read_text().replace(anchor, anchor + "    deliver_at: local\n"))
    pub = with_people(load_config(config))
    planned = json.loads(
        cli("plan", "--days", "2", "--json", "--now", "2026-11-28T12:00:00Z", cwd=example).stdout
    )
    weekly = [p for p in planned if p["job"] == "digest weekly"]
    assert weekly == [
        {
            "job": "digest weekly",
            "local": "2026-11-29T18:00:00+00:00",  # Monday 08:00 at UTC+14
            "utc": "2026-11-29T18:00:00+00:00",
            "period": "2026-11-30T08:00:00+00:00",
            "due_by_hour": [
                {"hour": "2026-11-29T18:00:00+00:00", "rows": 1},
                {"hour": "2026-11-30T02:00:00+00:00", "rows": 1},  # 08:00 in Kolkata
                {"hour": "2026-11-30T07:00:00+00:00", "rows": 1},
                {"hour": "2026-11-30T08:00:00+00:00", "rows": 1},
                {"hour": "2026-11-30T13:00:00+00:00", "rows": 1},
                {"hour": "2026-11-30T16:00:00+00:00", "rows": 1},
            ],
        }
    ]
    text = cli("plan", "--days", "2", "--now", "2026-11-28T12:00:00Z", cwd=example).stdout
    assert "digest weekly (for Mon 08:00 in each subscriber's zone)" in text
    assert "    Mon 02:00 GMT" in text
    # When it has been composed and the first zone's copy sent, `status` says the same.
    first = datetime(2026, 11, 29, 18, 0, tzinfo=UTC)
    engine = store.connect(pub.database_url)
    try:
        tick = run_due(pub, engine, first, KEY, lambda: [MaildirBackend({"path": "outbox"}, str(example))],
                       build_feeds=False, clock=first.timestamp)  # fmt: skip
    finally:
        engine.dispose()
    (report,) = tick.digests
    assert "5 wait for their hour in their zone" in report.line()
    assert report.settled  # rows waiting for their hour are no fault: `run --once` exits 0
    status = json.loads(
        cli("status", "--json", "--now", "2026-11-29T19:00:00Z", cwd=example).stdout
    )
    issue = status["digests"][0]["issues"][0]
    assert issue["sent"] == 1 and issue["pending"] == 5
    assert [h["rows"] for h in issue["due_by_hour"]] == [1, 1, 1, 1, 1]
    shown = cli("status", "--now", "2026-11-29T19:00:00Z", cwd=example).stdout
    assert "rows falling due in the next day, by hour: Mon 02:00 UTC 1, Mon 07:00 UTC 1" in shown
    # And the operators' status page.
    from publisher.web.pages import Pages

    page = Pages(pub).render("status.html", "Status", digests=status["digests"],
                             confirmations="none").body  # fmt: skip
    assert b"Falling due in the next day, by hour (UTC): 02:00 1, 07:00 1, 08:00 1" in page


def test_wall_times_across_the_clock_changes() -> None:
    # A time the clocks skip happens when the gap ends; a repeated one at its first.
    assert wall_moment(datetime(2026, 3, 29, 1, 30), LONDON).isoformat() == (
        "2026-03-29T02:00:00+01:00"
    )
    assert wall_moment(datetime(2026, 10, 25, 1, 30), LONDON).isoformat() == (
        "2026-10-25T01:30:00+01:00"
    )
    # Lord Howe moves its clocks by half an hour.
    assert wall_moment(
        datetime(2026, 10, 4, 2, 10), ZoneInfo("Australia/Lord_Howe")
    ).isoformat() == ("2026-10-04T02:30:00+11:00")
    period = datetime(2026, 11, 30, 8, 0, tzinfo=LONDON)
    assert compose_moment(period, [LONDON, ZoneInfo("America/Chicago")]) == period
    assert compose_moment(period, []) == period
    quiet = QuietHours.parse("22:00-07:00")
    late = datetime(2026, 11, 30, 23, 30, tzinfo=LONDON)
    assert quiet.release(late, LONDON).isoformat() == "2026-12-01T07:00:00+00:00"
    assert quiet.release(period, LONDON) == period


@pytest.mark.parametrize(
    ("setting", "what"),
    [
        ('    quiet: "22-07"\n', "'22-07' is not a range such as 22:00-07:00 (HH:MM-HH:MM)"),
        ('    quiet: "07:00-07:00"\n', "'07:00-07:00' is empty: its start and end are the same"),
        ("    deliver_at: sometimes\n", "Input should be 'once' or 'local'"),
    ],
)
def test_bad_settings_are_refused_with_their_line(
    example: Path, cli: Callable[..., Ran], setting: str, what: str
) -> None:
    config = example / "schedule.yaml"
    anchor = "      max_lateness: 7d      # ...if it is at most a week late\n"
    config.write_text(config.read_text().replace(anchor, anchor + setting))
    checked = cli("check", cwd=example)
    assert checked.returncode == 1
    assert what in checked.stderr and checked.stderr.startswith("schedule.yaml:64: digests[0].")


def test_local_time_needs_a_cron_hour(example: Path, cli: Callable[..., Ran]) -> None:
    config = example / "schedule.yaml"
    text = config.read_text().replace('cron: "0 8 * * mon"', "interval: 1d")
    anchor = "      max_lateness: 7d      # ...if it is at most a week late\n"
    config.write_text(text.replace(anchor, anchor + "    deliver_at: local\n"))
    checked = cli("check", cwd=example)
    assert checked.returncode == 1
    assert "deliver_at: local needs a schedule with cron" in checked.stderr


def rows_by_zone(url: str) -> dict[str | None, float]:
    """A local-time issue queued on the database at ``url``: each zone's rows' due time."""
    from sqlalchemy import create_engine

    from publisher.store import ledger

    store.connect(url).dispose()  # the schema
    engine = create_engine(url)
    try:
        with engine.begin() as db:
            for n, zone in enumerate([*PEOPLE.values(), "Asia/Kolkata", "Mars/Olympus"]):
                store.add_subscriber(db, f"p{n}@example.org", "", "weekly", 0.0, timezone=zone)
            # Zones of members who left, or of other lists only, are not the list's zones.
            store.add_subscriber(db, "gone@example.org", "", "weekly", 0.0, timezone="Asia/Tokyo")
            store.remove_subscriber(db, "gone@example.org", "weekly", 1.0)
            store.add_subscriber(db, "else@example.org", "", "daily", 0.0, timezone="Asia/Dubai")
            assert store.zones_present(db, "weekly") == [
                None, "America/Los_Angeles", "America/New_York", "Asia/Kolkata",
                "Europe/Berlin", "Mars/Olympus", "Pacific/Kiritimati",
            ]  # fmt: skip
            due = {None: 100.0, "Asia/Kolkata": 50.0, "Europe/Berlin": 70.0}
            issue = ledger.create_issue(db, "weekly", "weekly", 1, (None, 1.0), 1.0, 1.0, due=due)
            found = db.execute(
                select(store.subscribers.c.timezone, store.deliveries.c.next_attempt_at)
                .join(store.deliveries,
                      store.deliveries.c.subscriber_id == store.subscribers.c.id)
                .where(store.deliveries.c.issue_id == issue)
            ).all()  # fmt: skip
            # What status and `publisher run` read of it: the rows by time, the next one.
            assert ledger.due_times(db, issue, 80.0) == [(50.0, 2), (70.0, 1)]
            assert ledger.next_due(db, 60.0) == 50.0
    finally:
        engine.dispose()
    return {zone: float(at) for zone, at in found}


def check_rows_by_zone(found: dict[str | None, float]) -> None:
    assert found == {
        "Asia/Kolkata": 50.0, "Europe/Berlin": 70.0,
        # Zones the map does not name, and none: the schedule's zone's time.
        None: 100.0, "Pacific/Kiritimati": 100.0, "America/New_York": 100.0,
        "America/Los_Angeles": 100.0, "Mars/Olympus": 100.0,
    }  # fmt: skip


def test_rows_are_due_by_zone_in_one_statement(tmp_path: Path) -> None:
    check_rows_by_zone(rows_by_zone(f"sqlite:///{tmp_path / 'state.db'}"))


@pytest.mark.slow
@needs_postgres
def test_rows_are_due_by_zone_on_postgres() -> None:
    with postgres_cluster() as url:
        check_rows_by_zone(rows_by_zone(url))


def test_the_scheduler_composes_at_the_first_zones_hour(example: Path) -> None:
    """`publisher run`'s job for a local-time digest fires at each issue's compose moment,
    asked afresh of the subscribers' zones; the ledger's period decides what is due."""
    from publisher.scheduler.triggers import cron_trigger, due_period

    weekly = cron_trigger("0 8 * * mon", LONDON)
    zones: list[tzinfo] = [LONDON, ZoneInfo("Asia/Tokyo")]
    starts = LocalStart(weekly, lambda: zones)
    first = starts.get_next_fire_time(None, SATURDAY)
    assert first == datetime(2026, 11, 29, 23, 0, tzinfo=UTC)  # Monday 08:00 in Tokyo
    assert starts.get_next_fire_time(first, first) == datetime(2026, 12, 6, 23, 0, tzinfo=UTC)
    zones.append(ZoneInfo("Pacific/Auckland"))  # a new subscriber, further east
    assert starts.get_next_fire_time(None, SATURDAY) == datetime(2026, 11, 29, 19, 0, tzinfo=UTC)
    # The period is Monday 08:00 London; it is due from its compose moment, once.
    monday = datetime(2026, 11, 30, 8, 0, tzinfo=LONDON)
    compose = functools.partial(compose_moment, zones=zones)
    week = timedelta(days=7)
    at_start = datetime(2026, 11, 29, 19, 0, tzinfo=UTC)
    before = monday - week  # the ledger's last issue: the Monday before
    early = at_start - timedelta(minutes=1)
    assert due_period(weekly, early, before, "once", week, compose) is None
    assert due_period(weekly, at_start, before, "once", week, compose) == monday
    assert due_period(weekly, at_start, monday, "once", week, compose) is None  # composed
    # Down at that moment: caught up later with `once`, not with `skip`.
    later = at_start + timedelta(hours=5)
    assert due_period(weekly, later, before, "once", week, compose) == monday
    assert due_period(weekly, later, before, "skip", week, compose) is None
    # The daemon schedules the digest's job on this trigger.
    from publisher.scheduler.daemon import Foreground

    config = example / "schedule.yaml"
    anchor = "      max_lateness: 7d      # ...if it is at most a week late\n"
    config.write_text(config.read_text().replace(anchor, anchor + "    deliver_at: local\n"))
    daemon = Foreground(load_config(config), lambda tick: None)
    try:
        daemon._schedule()
        job = daemon.scheduler.get_job("job:weekly")
        assert isinstance(job.trigger, LocalStart)
    finally:
        daemon.engine.dispose()
