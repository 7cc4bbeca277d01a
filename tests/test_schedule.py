"""Schedules with an injected clock: crontab weekdays, DST days, catch-up after downtime."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from publisher.config import load_config
from publisher.scheduler.triggers import cron_trigger, due_period, runs

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def fires(expression: str, zone: ZoneInfo, start: datetime, end: datetime) -> list[str]:
    return [f.isoformat() for f in runs(cron_trigger(expression, zone), start, end)]


@pytest.mark.parametrize("sunday", ["0", "7", "sun", "SUN"])
def test_weekday_zero_and_seven_are_sunday(sunday: str) -> None:
    found = runs(cron_trigger(f"0 8 * * {sunday}", BERLIN), datetime(2026, 11, 1, tzinfo=BERLIN),
                 datetime(2026, 11, 30, tzinfo=BERLIN))  # fmt: skip
    assert [f.strftime("%a %d") for f in found] == [
        "Sun 01",
        "Sun 08",
        "Sun 15",
        "Sun 22",
        "Sun 29",
    ]


def test_weekday_ranges_and_steps_follow_crontab() -> None:
    week = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 8, tzinfo=UTC))  # Sun..Sat
    assert [f[:10] for f in fires("0 8 * * 1-5", ZoneInfo("UTC"), *week)] == [
        "2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05", "2026-11-06",
    ]  # fmt: skip
    assert [f[:10] for f in fires("0 8 * * */2", ZoneInfo("UTC"), *week)] == [
        "2026-11-01", "2026-11-03", "2026-11-05", "2026-11-07",
    ]  # crontab's */2 is Sun, Tue, Thu, Sat (APScheduler's own would be Mon, Wed, Fri, Sun)  # fmt: skip
    with pytest.raises(ValueError, match="runs backwards"):
        cron_trigger("0 8 * * sat-sun", ZoneInfo("UTC"))


@pytest.mark.parametrize(
    ("zone", "spring", "fall"),
    [(BERLIN, (2026, 3, 29), (2026, 10, 25)), (NEW_YORK, (2026, 3, 8), (2026, 11, 1))],
)
def test_daily_job_runs_once_on_dst_days(
    zone: ZoneInfo, spring: tuple[int, int, int], fall: tuple[int, int, int]
) -> None:
    for day in (spring, fall):
        start = datetime(*day, tzinfo=zone) - timedelta(days=1)
        found = list(runs(cron_trigger("30 2 * * *", zone), start, start + timedelta(days=3)))
        on_day = [f for f in found if f.date() == datetime(*day).date()]
        assert len(on_day) == 1, found  # never twice, never skipped
        assert len(found) == 3
    spring_run = next(f for f in runs(cron_trigger("30 2 * * *", zone), datetime(*spring, tzinfo=zone),
                                      datetime(*spring, 23, tzinfo=zone)))  # fmt: skip
    # 02:30 does not exist that day: as in Debian's cron, it runs right after the gap.
    assert (spring_run.hour, spring_run.minute) == (3, 0)


def test_wildcard_hours_run_in_each_real_hour_of_a_fall_back() -> None:
    start = datetime(2026, 10, 25, 0, 30, tzinfo=BERLIN)
    found = list(runs(cron_trigger("0 * * * *", BERLIN), start, start + timedelta(hours=4)))
    assert [f.strftime("%H:%M%z") for f in found] == ["01:00+0200", "02:00+0200", "02:00+0100",
                                                      "03:00+0100", "04:00+0100"]  # fmt: skip
    # (timestamps: Python subtracts two times of one zone as wall clocks, ignoring fold)
    gaps = {b.timestamp() - a.timestamp() for a, b in itertools.pairwise(found)}
    assert gaps == {3600.0}


WEEKLY = cron_trigger("0 8 * * mon", ZoneInfo("UTC"))
MONDAY = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def test_on_time_and_already_sent() -> None:
    assert due_period(WEEKLY, MONDAY + timedelta(minutes=2), None, "once", DAY) == MONDAY
    assert due_period(WEEKLY, MONDAY + timedelta(minutes=2), MONDAY, "once", DAY) is None
    assert due_period(WEEKLY, MONDAY - timedelta(minutes=1), MONDAY - 7 * DAY, "once", DAY) is None


def test_downtime_across_one_send_time() -> None:
    late = MONDAY + timedelta(hours=5)
    last = MONDAY - 7 * DAY
    assert due_period(WEEKLY, late, last, "once", DAY) == MONDAY  # one catch-up issue
    assert due_period(WEEKLY, late, last, "skip", DAY) is None  # none
    assert due_period(WEEKLY, MONDAY + 2 * DAY, last, "once", DAY) is None  # too late


def test_downtime_across_several_send_times_gives_exactly_one_issue() -> None:
    last = MONDAY - 21 * DAY
    now = MONDAY + timedelta(hours=3)
    due = due_period(WEEKLY, now, last, "once", 30 * DAY)
    assert due == MONDAY  # the latest missed period only
    assert due_period(WEEKLY, now + timedelta(minutes=1), due, "once", 30 * DAY) is None


def test_interval_schedules_count_from_a_fixed_anchor() -> None:
    from publisher.scheduler.triggers import INTERVAL_ANCHOR, interval_trigger

    every = interval_trigger(12 * 3600, ZoneInfo("UTC"), INTERVAL_ANCHOR)
    start = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)
    found = [f.isoformat() for f in runs(every, start, start + timedelta(days=1))]
    assert found == ["2026-11-28T12:00:00+00:00", "2026-11-29T00:00:00+00:00"]
    assert (
        due_period(every, datetime(2026, 11, 28, 12, 3, tzinfo=UTC), None, "skip", DAY) is not None
    )


def test_the_scheduler_does_not_log_each_job_it_runs(
    example: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from publisher.scheduler.daemon import Foreground

    caplog.set_level(logging.INFO)
    daemon = Foreground(load_config(example / "schedule.yaml"), lambda tick: None)
    try:
        daemon.scheduler.add_job(lambda: None, "interval", seconds=5, id="probe")
    finally:
        daemon.engine.dispose()
    assert [r.getMessage() for r in caplog.records if r.name.startswith("apscheduler")] == []
