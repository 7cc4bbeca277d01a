"""Crontab lines fire when Debian's cron would fire them: the day-of-month / day-of-week OR
rule, wide steps, names, macros, and the days the clocks change in both hemispheres,
checked against an independent cron (tests/cron_reference.py) over seeded random lines."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from publisher.scheduler.triggers import cron_trigger, runs
from tests.conftest import Ran
from tests.cron_reference import debian_fires

ZONES = ["Europe/London", "Europe/Berlin", "America/New_York", "Australia/Sydney",
         "America/Santiago", "Asia/Kolkata", "UTC", "Pacific/Chatham"]  # fmt: skip
LONDON = ZoneInfo("Europe/London")


def ours(expression: str, zone: ZoneInfo, start: datetime, end: datetime) -> list[str]:
    return [fire.isoformat() for fire in runs(cron_trigger(expression, zone), start, end)]


def _value(rng: random.Random, low: int, high: int, names: list[str] | None = None) -> str:
    pick = rng.random()
    if names and pick < 0.15:
        a, b = sorted(rng.sample(range(len(names)), 2))
        return f"{names[a]}-{names[b]}" if rng.random() < 0.5 else names[a]
    if pick < 0.35:
        return str(rng.randint(low, high))
    if pick < 0.5:
        a, b = sorted(rng.sample(range(low, high + 1), 2))
        return f"{a}-{b}"
    if pick < 0.65:
        return ",".join(str(v) for v in sorted(rng.sample(range(low, high + 1), 3)))
    if pick < 0.8:
        return f"*/{rng.randint(2, high - low + 4)}"  # steps wider than the range included
    return "*"


def random_line(rng: random.Random) -> str:
    """A crontab line as operators write them, leaning towards the hours clocks change in."""
    minute = rng.choice([str(rng.choice([0, 15, 30, 45])), _value(rng, 0, 59), "*/20"])
    hour = rng.choice([str(rng.choice([0, 1, 2, 3, 23])), _value(rng, 0, 23)])
    day = rng.choice(["*", "*", _value(rng, 1, 31)])
    month = rng.choice(["*", "*", _value(rng, 1, 12, ["jan", "mar", "apr", "sep", "oct", "nov"])])
    weekday = rng.choice(["*", "*", _value(rng, 0, 7, ["sun", "mon", "tue", "fri", "sat"])])
    return f"{minute} {hour} {day} {month} {weekday}"


def change_days(zone: ZoneInfo, year: int = 2026) -> list[date]:
    """The days the clocks change in ``zone`` in ``year``."""
    found = []
    day = date(year, 1, 1)
    while day.year == year:
        before = datetime(day.year, day.month, day.day, tzinfo=zone).utcoffset()
        after = (
            datetime(day.year, day.month, day.day, tzinfo=zone) + timedelta(days=1)
        ).utcoffset()
        if before != after:
            found.append(day)
        day += timedelta(days=1)
    return found


LINES = [random_line(random.Random(seed)) for seed in range(60)]


def test_the_zones_change_clocks_in_both_hemispheres() -> None:
    # (Santiago's clocks change at midnight: its skipped hour is 00:00-01:00.)
    assert [d.month for d in change_days(ZoneInfo("Europe/London"))] == [3, 10]
    assert [d.month for d in change_days(ZoneInfo("Australia/Sydney"))] == [4, 10]
    assert [d.month for d in change_days(ZoneInfo("America/Santiago"))] == [4, 9]
    assert [d.month for d in change_days(ZoneInfo("Pacific/Chatham"))] == [4, 9]
    assert change_days(ZoneInfo("Asia/Kolkata")) == []


@pytest.mark.parametrize("zone_name", ZONES)
def test_fire_times_on_the_days_clocks_change_are_debian_crons(zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    days = change_days(zone) or [date(2026, 3, 29), date(2026, 10, 25)]
    for index, line in enumerate(LINES):
        if index % len(ZONES) != ZONES.index(zone_name) and index % 3:
            continue  # each zone takes its share of the lines, and every third line
        for day in days:
            start = datetime(day.year, day.month, day.day, tzinfo=zone) - timedelta(days=2)
            end = start + timedelta(days=5)
            assert ours(line, zone, start, end) == debian_fires(line, zone, start, end), line


@pytest.mark.slow
def test_sixty_lines_in_eight_zones_for_240_days_are_debian_crons() -> None:
    for index, line in enumerate(LINES):
        zone = ZoneInfo(ZONES[index % len(ZONES)])
        start = datetime(2026, 2, 1, tzinfo=zone)
        end = start + timedelta(days=240)
        assert ours(line, zone, start, end) == debian_fires(line, zone, start, end), line


@pytest.mark.parametrize(
    "line", ["0 1 8,13,18 * mon-fri", "0 2 */2 * sun", "30 23 * */15 *", "@daily", "@weekly",
             "@monthly", "@yearly", "@annually", "@midnight", "@hourly",
             "0 9 * jan-mar,oct mon-wed", "5 4 1-7/2 * fri", "0 0 31 * *", "0 12 */45 * *"],
)  # fmt: skip
def test_lines_cron_accepts_are_accepted_and_fire_as_cron(line: str) -> None:
    start = datetime(2025, 12, 20, tzinfo=LONDON)
    end = start + timedelta(days=45)
    found = ours(line, LONDON, start, end)
    assert found and found == debian_fires(line, LONDON, start, end)


def test_either_day_field_may_match_when_both_are_restricted() -> None:
    start = datetime(2026, 6, 1, tzinfo=LONDON)  # a Monday
    found = ours("0 1 8,13,18 * mon-fri", LONDON, start, start + timedelta(days=19))
    days = [fire[:10] for fire in found]
    assert "2026-06-13" in days  # a Saturday: the 13th
    assert "2026-06-02" in days  # a Tuesday
    assert "2026-06-07" not in days  # a Sunday, not the 8th, 13th or 18th


def test_a_step_wider_than_the_field_takes_its_first_value() -> None:
    start = datetime(2026, 1, 1, tzinfo=LONDON)
    found = ours("30 23 * */15 *", LONDON, start, start + timedelta(days=400))
    assert {fire[5:7] for fire in found} == {"01"}  # January only
    assert len(found) == 31 + 31  # every day of January 2026 and of January 2027


def test_a_fixed_time_skipped_by_the_clocks_runs_right_after_the_gap() -> None:
    day = datetime(2026, 3, 29, tzinfo=LONDON)
    assert ours("45 1 * * *", LONDON, day, day + timedelta(hours=23)) == [
        "2026-03-29T02:00:00+01:00"
    ]
    santiago = ZoneInfo("America/Santiago")  # midnight does not exist on 2026-09-06
    day = datetime(2026, 9, 5, 12, tzinfo=santiago)
    assert ours("@daily", santiago, day, day + timedelta(days=1)) == ["2026-09-06T01:00:00-03:00"]


def test_a_fixed_time_runs_once_in_a_repeated_hour_and_wildcards_run_twice() -> None:
    day = datetime(2026, 10, 25, tzinfo=LONDON)
    assert ours("30 1 * * *", LONDON, day, day + timedelta(hours=5)) == [
        "2026-10-25T01:30:00+01:00"
    ]
    assert ours("30 * * * *", LONDON, day, day + timedelta(hours=3))[1:3] == [
        "2026-10-25T01:30:00+01:00", "2026-10-25T01:30:00+00:00",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("line", "said"),
    [("@reboot", "@reboot has no time to run at"), ("@often", "is not one of @yearly"),
     ("0 0 30 feb *", "never fires"), ("0 8 * * 8", "day of week must be 0-7, not 8"),
     ("0 8 * * L", "day of week: 'l' is not a number or a name"),
     ("0 8 * *", "has 4 fields")],
)  # fmt: skip
def test_lines_cron_refuses_are_refused_at_their_place(example: Path, cli: Callable[..., Ran], line: str,
                                                       said: str) -> None:  # fmt: skip
    config = example / "schedule.yaml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('cron: "0 8 * * mon"', f'cron: "{line}"'), encoding="utf-8")
    line_number = next(
        n for n, row in enumerate(config.read_text(encoding="utf-8").splitlines(), 1)
        if line in row and "cron:" in row
    )  # fmt: skip
    result = cli("plan", cwd=example)
    assert result.returncode == 1
    assert result.stderr.startswith(f"schedule.yaml:{line_number}: digests[0].schedule.cron: ")
    assert said in result.stderr
    assert "APScheduler" not in result.stderr and "Traceback" not in result.stderr


def test_plan_lists_the_fire_times_debian_cron_would(
    example: Path, cli: Callable[..., Ran]
) -> None:
    config = example / "schedule.yaml"
    text = config.read_text(encoding="utf-8")
    line = "45 1 8,13 * sun"
    config.write_text(text.replace('cron: "0 8 * * mon"', f'cron: "{line}"'), encoding="utf-8")
    result = cli(
        "plan", "--days", "240", "--json", "--now", "2026-02-01T00:00:00+00:00", cwd=example
    )
    assert result.returncode == 0, result.stderr
    digest = [p["local"] for p in json.loads(result.stdout) if p["job"] == "digest weekly"]
    start = datetime(2026, 2, 1, tzinfo=ZoneInfo("UTC"))
    assert digest == debian_fires(line, LONDON, start, start + timedelta(days=240))
    assert "2026-03-29T02:00:00+01:00" in digest  # a Sunday in the skipped hour
