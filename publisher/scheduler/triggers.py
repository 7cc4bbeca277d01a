"""When things run: cron expressions as crontab means them, across DST, and the one
decision that matters after downtime — is an issue due now, and for which period?

Pure: expressions and moments in, moments out. Fire times come from cronsim, which follows
Debian's cron: when both day of month and day of week are restricted either may match; a
job at a fixed time that falls in a skipped DST hour runs right after the gap, and one in a
repeated hour runs once, at its first occurrence; a job whose minute or hour is `*` (or
`*/n`) runs in every real hour. APScheduler runs the jobs: ``CronSchedule`` is one of its
triggers. Its own cron trigger disagrees with crontab on weekday numbers, the OR rule,
wide steps and DST gaps.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger
from cronsim import CronSim, CronSimError

from publisher.config import Digest, Publication, Schedule
from publisher.delivery.local import HourCount
from publisher.localtime import MOST_AHEAD, compose_moment

DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
          ("day of week", 0, 7))  # fmt: skip
# crontab(5)'s nicknames; @reboot has no fire times and is refused.
MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
          "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
          "@hourly": "0 * * * *"}  # fmt: skip
# A run up to this late still counts as on time (a busy machine, a slow previous job).
GRACE = timedelta(minutes=5)
# Bounds every walk over fire times (a minutely schedule across a long lateness window).
MAX_STEPS = 100_000


def _check_field(field: str, index: int) -> None:
    """ValueError with a plain message if ``field`` is not crontab syntax: values, names,
    ranges, steps (a step wider than the range selects its first value, as in cron)."""
    name, low, high = FIELDS[index]
    names = DAYS if index == 4 else MONTHS if index == 3 else ()
    for part in field.lower().split(","):
        match = re.fullmatch(r"(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(\d+))?", part)
        if not match:
            raise ValueError(f"{name}: '{part}' is not a value, range or step")
        body, step = match.group(1), match.group(2)
        if step is not None and int(step) == 0:
            raise ValueError(f"{name}: a step of 0 never fires")
        if body == "*":
            continue
        ends = [_number(x, names, name, low, high) for x in body.split("-")]
        if ends[0] > ends[-1]:
            raise ValueError(f"{name}: range '{body}' runs backwards")


def _number(text: str, names: tuple[str, ...], name: str, low: int, high: int) -> int:
    if text in names:
        return names.index(text) + (1 if name == "month" else 0)
    if not text.isdigit():
        raise ValueError(
            f"{name}: '{text}' is not a number"
            + (f" or a name ({', '.join(names)})" if names else "")
        )
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{name} must be {low}-{high}, not {value}")
    return value


def crontab_fields(expression: str) -> str:
    """The 5 fields ``expression`` stands for (a macro such as @daily expanded);
    ValueError saying which field is wrong."""
    text = expression.strip()
    if text.startswith("@"):
        if text.lower() == "@reboot":
            raise ValueError("@reboot has no time to run at; give a schedule such as @daily")
        if text.lower() not in MACROS:
            raise ValueError(f"'{text}' is not one of {', '.join(MACROS)}")
        return MACROS[text.lower()]
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(
            f"'{expression}' has {len(fields)} fields; cron needs 5 (minute hour day month weekday)"
        )
    for index, field in enumerate(fields):
        _check_field(field, index)
    try:
        CronSim(" ".join(fields), datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError:  # the one check left to it: a day no month it names has
        raise ValueError(f"'{expression}' never fires: no month it names has that day") from None
    return " ".join(fields)


class CronSchedule(BaseTrigger):  # type: ignore[misc]
    """A crontab line in a time zone, as an APScheduler trigger."""

    __slots__ = ("expression", "timezone")

    def __init__(self, expression: str, zone: tzinfo) -> None:
        self.expression = crontab_fields(expression)
        self.timezone = zone

    def after(self, moment: datetime) -> Iterator[datetime]:
        """Fire times after ``moment``, in order (each a real moment with its offset)."""
        start = moment.astimezone(self.timezone)
        for fire in CronSim(self.expression, start):
            # cronsim walks a fixed-time job on the wall clock and answers the first of a
            # repeated hour's two moments: from inside its second one, that is past.
            if fire.timestamp() <= start.timestamp():
                continue
            real = datetime.fromtimestamp(fire.timestamp(), self.timezone)
            # A wildcard job's day can begin in a skipped hour (Santiago's clocks skip
            # midnight): cronsim then answers a wall time that never exists, where cron
            # runs nothing.
            if real.replace(tzinfo=None) == fire.replace(tzinfo=None, fold=0):
                yield real

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        # As APScheduler's own triggers: the first fire time after the previous one,
        # and not before `now` when there is none yet.
        start = now if previous_fire_time is None else min(now, previous_fire_time)
        if previous_fire_time is None:
            start -= timedelta(microseconds=1)  # `now` itself may be a fire time
        return next(self.after(start), None)

    def __str__(self) -> str:
        return f"cron[{self.expression}]"


def cron_trigger(expression: str, zone: tzinfo) -> CronSchedule:
    """A crontab line (5 fields or a macro); raises ValueError saying which field is wrong."""
    return CronSchedule(expression, zone)


def interval_trigger(seconds: int, zone: tzinfo, anchor: datetime) -> IntervalTrigger:
    return IntervalTrigger(seconds=seconds, start_date=anchor, timezone=zone)


def runs(
    trigger: CronSchedule | IntervalTrigger, after: datetime, until: datetime
) -> Iterator[datetime]:
    """Fire times in (after, until], in order."""
    if isinstance(trigger, CronSchedule):
        fires: Iterator[datetime] = trigger.after(after)
    else:
        fires = _interval_fires(trigger, after)
    for _, fire in zip(range(MAX_STEPS), fires, strict=False):
        # Compared as timestamps: Python compares two times of one zone as wall clocks.
        if fire.timestamp() > until.timestamp():
            return
        yield fire


def _interval_fires(trigger: IntervalTrigger, after: datetime) -> Iterator[datetime]:
    previous: datetime | None = None
    moment = after + timedelta(microseconds=1)
    while True:
        fire = trigger.get_next_fire_time(previous, moment)
        if fire is None:
            return
        yield fire
        previous, moment = fire, fire + timedelta(microseconds=1)


def due_period(
    trigger: CronSchedule | IntervalTrigger,
    now: datetime,
    last_period: datetime | None,
    catch_up: str,
    max_lateness: timedelta,
    starts: Callable[[datetime], datetime] | None = None,
) -> datetime | None:
    """The period an issue is due for at ``now``, or None.

    On time (within GRACE of its fire time, or of its ``starts``: when a local-time
    issue is composed, up to MOST_AHEAD before its period): due. Missed (the scheduler
    was down): with ``catch_up: once``, one issue for the latest missed period if it is at
    most ``max_lateness`` old; with ``skip``, none (the next issue's window still starts
    where the last one ended, so no article is lost). A period the ledger already has is
    never due again.
    """
    look_back = max(max_lateness, GRACE)
    latest, begun = None, None
    ahead = MOST_AHEAD if starts is not None else timedelta(0)
    for fire in runs(trigger, now - look_back, now + ahead):
        begins = fire if starts is None else starts(fire)
        if begins.timestamp() <= now.timestamp():
            latest, begun = fire, begins
    if (
        latest is None
        or begun is None
        or (last_period is not None and last_period.timestamp() >= latest.timestamp())
    ):
        return None
    late = timedelta(seconds=now.timestamp() - begun.timestamp())
    if late <= GRACE:
        return latest
    if catch_up == "skip" or late > max_lateness:
        return None
    return latest


# Interval schedules count from this moment, so their fire times are the same everywhere.
INTERVAL_ANCHOR = datetime.fromisoformat("2000-01-03T00:00:00+00:00")


def trigger(pub: Publication, schedule: Schedule) -> Any:
    zone = pub.zone_of(schedule)
    if schedule.cron is not None:
        return cron_trigger(schedule.cron, zone)
    assert schedule.interval is not None
    return interval_trigger(schedule.interval, zone, INTERVAL_ANCHOR.astimezone(zone))


class LocalStart(BaseTrigger):  # type: ignore[misc]
    """When the issues of a ``deliver_at: local`` digest are composed: each period's hour
    as it comes in the first zone of the digest's subscribers (asked of ``zones`` each
    time, so a subscriber in a new zone moves the next issue earlier)."""

    def __init__(self, schedule: CronSchedule, zones: Callable[[], list[tzinfo]]) -> None:
        self.schedule = schedule
        self.zones = zones

    def starts(self, after: datetime) -> Iterator[tuple[datetime, datetime]]:
        """(period, compose moment) of the periods composed after ``after``, in order of
        their compose moments."""
        zones = self.zones()
        pending: list[tuple[datetime, datetime]] = []
        fires = self.schedule.after(after - MOST_AHEAD)
        for _, fire in zip(range(MAX_STEPS), fires, strict=False):
            # A period's compose moment is at most MOST_AHEAD before it: once the
            # periods pass the earliest waiting one by that much, it is the next.
            while pending and pending[0][1].timestamp() + MOST_AHEAD.total_seconds() < (
                fire.timestamp()
            ):
                yield pending.pop(0)
            start = compose_moment(fire, zones)
            if start.timestamp() > after.timestamp():
                pending.append((fire, start))
                pending.sort(key=lambda item: item[1].timestamp())

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        start = now if previous_fire_time is None else min(now, previous_fire_time)
        if previous_fire_time is None:
            start -= timedelta(microseconds=1)
        found = next(iter(self.starts(start)), None)
        return None if found is None else found[1]

    def __str__(self) -> str:
        return f"local[{self.schedule.expression}]"


@dataclass(frozen=True)
class Planned:
    job: str
    at: datetime
    period: datetime | None = None  # a local-time issue: the hour it is composed for
    hours: tuple[HourCount, ...] = ()  # its rows by the hour they fall due

    def as_dict(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "job": self.job,
            "local": self.at.isoformat(),
            "utc": self.at.astimezone(UTC).isoformat(),
        }
        if self.period is not None:
            shown["period"] = self.period.isoformat()
        if self.hours:
            shown["due_by_hour"] = [count.as_dict() for count in self.hours]
        return shown


def _no_zones(digest: Digest) -> list[tzinfo]:
    return []


def upcoming_runs(
    pub: Publication,
    now: datetime,
    days: int,
    zones: Callable[[Digest], list[tzinfo]] | None = None,
) -> list[Planned]:
    """Every run of every job in the next ``days`` days, in time order. A ``deliver_at:
    local`` digest runs when its issue is composed: its hour in the first of the ``zones``
    its subscribers have (without ``zones``, its own)."""
    until = now + timedelta(days=days)
    found: list[Planned] = []
    feeds = pub.config.feeds.schedule
    if feeds is not None:
        found += [Planned("feeds", at) for at in runs(trigger(pub, feeds), now, until)]
    for digest in pub.config.digests:
        if digest.schedule is None:
            continue
        fires = trigger(pub, digest.schedule)
        job = f"digest {digest.name}"
        if digest.deliver_at == "local" and isinstance(fires, CronSchedule):
            asked = zones or _no_zones
            starts = LocalStart(fires, functools.partial(asked, digest)).starts(now)
            for period, at in starts:
                if at.timestamp() > until.timestamp():
                    break
                found.append(Planned(job, at.astimezone(fires.timezone), period))
        else:
            found += [Planned(job, at) for at in runs(fires, now, until)]
    return sorted(found, key=lambda p: (p.at.timestamp(), p.job))
