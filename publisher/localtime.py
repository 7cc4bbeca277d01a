"""Wall-clock time in time zones as cron means it: the moment a wall time happens in a
zone (across DST gaps and repeats), quiet hours, and the first zone to reach an hour. Pure:
no clock is read here."""

from __future__ import annotations

import contextlib
import functools
import re
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# The widest spread of the world's clocks (UTC-12 to UTC+14) and a DST hour: how long
# before its own hour a local-time issue may have to be composed.
MOST_AHEAD = timedelta(hours=27)
_QUIET = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class QuietHours:
    """A daily range of wall-clock time (it may run past midnight: 22:00-07:00) in which
    no first copy of an issue is due."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        found = _QUIET.match(text.strip())
        if found is None:
            raise ValueError(f"'{text}' is not a range such as 22:00-07:00 (HH:MM-HH:MM)")
        start = time(int(found[1]), int(found[2]))
        end = time(int(found[3]), int(found[4]))
        if start == end:
            raise ValueError(f"'{text}' is empty: its start and end are the same")
        return cls(start, end)

    def contains(self, wall: time) -> bool:
        if self.start < self.end:
            return self.start <= wall < self.end
        return wall >= self.start or wall < self.end

    def release(self, at: datetime, zone: tzinfo) -> datetime:
        """``at``, or the end of the quiet hours it falls in, in ``zone``."""
        wall = at.astimezone(zone).replace(tzinfo=None)
        if not self.contains(wall.time()):
            return at
        day = wall.date()
        if self.start > self.end and wall.time() >= self.start:
            day += timedelta(days=1)  # 23:30 in 22:00-07:00: tomorrow's 07:00
        return wall_moment(datetime.combine(day, self.end), zone)


def wall_moment(wall: datetime, zone: tzinfo) -> datetime:
    """The moment a wall-clock time (naive) happens in ``zone``, as cron runs a job at it:
    a time the clocks skip runs when the gap ends, a time they repeat runs at its first
    occurrence."""
    first = wall.replace(tzinfo=zone, fold=0)
    real = datetime.fromtimestamp(first.timestamp(), zone)
    if real.replace(tzinfo=None) == wall:
        return real
    # Skipped: the offset before the gap puts it after the gap, the offset after puts it
    # before; the gap ends at the first second with the later offset (bisected: bounded).
    low, high = int(wall.replace(tzinfo=zone, fold=1).timestamp()), int(first.timestamp())
    after = first.replace(fold=1).utcoffset()
    for _ in range(64):
        if high - low <= 1:
            break
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == after:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, zone)


def local_moment(period: datetime, zone: tzinfo) -> datetime:
    """The period's wall-clock date and time (in the schedule's zone) as it comes in
    ``zone``."""
    return wall_moment(period.replace(tzinfo=None), zone)


@functools.cache
def zone_names() -> dict[str, str]:
    """The IANA zone names the zone database has, by their lower-case spelling. (ZoneInfo
    alone would take any file of the database's folder, "localtime" included.)"""
    return {name.lower(): name for name in zoneinfo.available_timezones() | {"UTC"}}


@functools.cache
def _zone_links() -> dict[str, str]:
    """The zone database's old names for zones (Asia/Calcutta, US/Eastern), each with the
    name it stands for today, from the database's own ``tzdata.zi``. A name ``zone.tab``
    still gives a country is no old name, even where its clock is now another place's
    (Europe/Oslo keeps its name, not Europe/Berlin's). Empty when there is none to read:
    the old name is then kept, which still names the same clock."""
    folders = [Path(folder) for folder in zoneinfo.TZPATH]
    with contextlib.suppress(ModuleNotFoundError):  # the package is only a fallback
        folders.append(Path(str(resources.files("tzdata") / "zoneinfo")))
    for folder in folders:
        try:
            lines = (folder / "tzdata.zi").read_text(encoding="utf-8").splitlines()
            places = (folder / "zone.tab").read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        current = {fields[2] for fields in map(str.split, places)
                   if len(fields) >= 3 and not fields[0].startswith("#")}  # fmt: skip
        links = {}
        for line in lines:
            fields = line.split()
            if len(fields) == 3 and fields[0] == "L" and fields[2] not in current:
                links[fields[2]] = fields[1]
        return links
    return {}


def canonical_zone(name: str) -> str:
    """The name a zone goes by today: browsers still report some by an older one
    (Chromium's ICU says Asia/Calcutta for Asia/Kolkata), and one clock should be stored
    under one name. UTC stays UTC."""
    links = _zone_links()
    for _ in range(8):  # a link names a zone; the bound only guards a malformed file
        if name == "UTC" or name not in links:
            break
        name = links[name]
    return name


def zone_of(name: str | None, own: tzinfo) -> tzinfo:
    """A stored zone; none, or one a newer zone database no longer has: the schedule's."""
    if name is None:
        return own
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return own


def compose_moment(period: datetime, zones: Iterable[tzinfo]) -> datetime:
    """When a local-time issue of ``period`` is composed: when its hour comes in the first
    of ``zones`` (the period itself when there are none)."""
    return min((local_moment(period, zone) for zone in zones), default=period,
               key=lambda at: at.timestamp())  # fmt: skip
