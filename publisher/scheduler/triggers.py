"""When things run: cron expressions as crontab means them, across DST, and the one
decision that matters after downtime — is an issue due now, and for which period?

Pure: expressions and moments in, moments out. APScheduler computes fire times; two of its
habits are corrected here. Its numeric day of week starts at Monday (crontab's 0 is
Sunday), so every weekday field is rewritten into day names first. And in the repeated hour
of a DST fall-back it fires a fixed-time job twice; like cron, we run it once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from publisher.config import Publication, Schedule

DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
          ("day of week", 0, 7))  # fmt: skip
# A run up to this late still counts as on time (a busy machine, a slow previous job).
GRACE = timedelta(minutes=5)
# Bounds every walk over fire times (a minutely schedule across a long lateness window).
MAX_STEPS = 100_000


def _values(field: str, index: int) -> set[int]:
    """The numbers a crontab field selects; ValueError with a plain message if invalid."""
    name, low, high = FIELDS[index]
    names = DAYS if index == 4 else MONTHS if index == 3 else ()
    found: set[int] = set()
    for part in field.lower().split(","):
        match = re.fullmatch(r"(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(\d+))?", part)
        if not match:
            raise ValueError(f"{name}: '{part}' is not a value, range or step")
        body, step = match.group(1), int(match.group(2) or 1)
        if step == 0:
            raise ValueError(f"{name}: a step of 0 never fires")
        if body == "*":
            start, end = low, (6 if index == 4 else high)
        else:
            ends = [_number(x, names, index, name, low, high) for x in body.split("-")]
            start, end = ends[0], ends[-1]
            if match.group(2) and len(ends) == 1:
                end = 6 if index == 4 else high
        if start > end:
            raise ValueError(f"{name}: range '{body}' runs backwards")
        found.update(range(start, end + 1, step))
    if index == 4:
        found = {0 if v == 7 else v for v in found}  # crontab: 0 and 7 are both Sunday
    return found


def _number(text: str, names: tuple[str, ...], index: int, name: str, low: int, high: int) -> int:
    if text in names:
        return names.index(text) + (1 if index == 3 else 0)
    if not text.isdigit():
        raise ValueError(
            f"{name}: '{text}' is not a number"
            + (f" or a name ({', '.join(names)})" if names else "")
        )
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{name} must be {low}-{high}, not {value}")
    return value


def cron_trigger(expression: str, zone: tzinfo) -> CronTrigger:
    """A 5-field crontab expression; raises ValueError saying which field is wrong."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"'{expression}' has {len(fields)} fields; cron needs 5 (minute hour day month weekday)"
        )
    for index, field in enumerate(fields):
        _values(field, index)  # validate every field with crontab's rules
    minute, hour, day, month, _ = fields
    weekdays = ",".join(DAYS[d] for d in sorted(_values(fields[4], 4)))
    if fields[4] == "*":
        weekdays = "*"
    # crontab: when both day of month and day of week are restricted, either may match.
    # APScheduler requires both; such expressions are refused rather than misread.
    if day != "*" and fields[4] != "*":
        raise ValueError("restricting both day of month and day of week is ambiguous; use one")
    return CronTrigger(minute=minute, hour=hour, day=day, month=month.lower(),
                       day_of_week=weekdays, timezone=zone)  # fmt: skip


def interval_trigger(seconds: int, zone: tzinfo, anchor: datetime) -> IntervalTrigger:
    return IntervalTrigger(seconds=seconds, start_date=anchor, timezone=zone)


def runs(
    trigger: CronTrigger | IntervalTrigger, after: datetime, until: datetime
) -> Iterator[datetime]:
    """Fire times in (after, until], each once (see the module's note on DST)."""
    zone = trigger.timezone
    fixed_hour = isinstance(trigger, CronTrigger) and str(trigger.fields[5]) != "*"
    previous: datetime | None = None
    seen_local: set[tuple[int, ...]] = set()
    moment = after + timedelta(microseconds=1)
    last = after.timestamp()
    for _ in range(MAX_STEPS):
        fire = trigger.get_next_fire_time(previous, moment)
        # Compared as timestamps: Python compares two times of one zone as wall clocks.
        if fire is None or fire.timestamp() > until.timestamp():
            return
        if fire.timestamp() <= last:
            # Inside a repeated hour APScheduler can hand back a moment already passed
            # (it ignores `fold`): step past the ambiguity instead of circling in it.
            moment += timedelta(hours=1)
            continue
        fire = datetime.fromtimestamp(fire.timestamp(), zone)  # a real moment, real offset
        last = fire.timestamp()
        wall = fire.replace(tzinfo=None).timetuple()[:5]
        if not (fixed_hour and wall in seen_local):
            yield fire
        seen_local.add(wall)
        previous, moment = fire, fire + timedelta(microseconds=1)


def due_period(
    trigger: CronTrigger | IntervalTrigger,
    now: datetime,
    last_period: datetime | None,
    catch_up: str,
    max_lateness: timedelta,
) -> datetime | None:
    """The period an issue is due for at ``now``, or None.

    On time (within GRACE of its fire time): due. Missed (the scheduler was down): with
    ``catch_up: once``, one issue for the latest missed period if it is at most
    ``max_lateness`` old; with ``skip``, none (the next issue's window still starts where
    the last one ended, so no article is lost). A period the ledger already has is never
    due again.
    """
    look_back = max(max_lateness, GRACE)
    latest = None
    for fire in runs(trigger, now - look_back, now):
        latest = fire
    if latest is None or (
        last_period is not None and last_period.timestamp() >= latest.timestamp()
    ):
        return None
    late = timedelta(seconds=now.timestamp() - latest.timestamp())
    if late <= GRACE:
        return latest
    if catch_up == "skip" or late > max_lateness:
        return None
    return latest


# Interval schedules count from this moment, so their fire times are the same everywhere.
INTERVAL_ANCHOR = datetime.fromisoformat("2000-01-03T00:00:00+00:00")


def trigger(pub: Publication, schedule: Schedule) -> Any:
    zone = _zone(pub, schedule)
    if schedule.cron is not None:
        return cron_trigger(schedule.cron, zone)
    assert schedule.interval is not None
    return interval_trigger(schedule.interval, zone, INTERVAL_ANCHOR.astimezone(zone))


def _zone(pub: Publication, schedule: Schedule) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(schedule.timezone) if schedule.timezone else pub.config.site.zone


@dataclass(frozen=True)
class Planned:
    job: str
    at: datetime

    def as_dict(self) -> dict[str, str]:
        return {
            "job": self.job,
            "local": self.at.isoformat(),
            "utc": self.at.astimezone(UTC).isoformat(),
        }


def upcoming_runs(pub: Publication, now: datetime, days: int) -> list[Planned]:
    """Every run of every job in the next ``days`` days, in time order."""
    until = now + timedelta(days=days)
    found: list[Planned] = []
    feeds = pub.config.feeds.schedule
    if feeds is not None:
        found += [Planned("feeds", at) for at in runs(trigger(pub, feeds), now, until)]
    for digest in pub.config.digests:
        if digest.schedule is not None:
            found += [
                Planned(f"digest {digest.name}", at)
                for at in runs(trigger(pub, digest.schedule), now, until)
            ]
    return sorted(found, key=lambda p: (p.at, p.job))
