"""An independent cron, written from crontab(5) and Debian's cron.c, to check our fire times
against: it walks the clock minute by minute as the daemon does, keeping a "virtual" wall
clock, instead of computing the next match.

Debian's rules across a change of the clocks: when the wall clock jumps forward (DST
begins), a job at a fixed time (neither minute nor hour starts with `*`) whose time was
skipped runs once, at the first real minute after the jump; jobs with a wildcard minute or
hour run only at wall times that exist. When the wall clock goes back, fixed-time jobs do
not run again until the wall clock passes where it had been; wildcard jobs run as usual.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

NAMES = {
    **{d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))},
    **{m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug",
                                        "sep", "oct", "nov", "dec"))},
}  # fmt: skip
MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
          "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
          "@hourly": "0 * * * *"}  # fmt: skip


def _field(text: str, low: int, high: int) -> set[int]:
    found: set[int] = set()
    for part in text.lower().split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            first, last = low, high
        elif "-" in body:
            a, b = body.split("-")
            first = NAMES[a] if a in NAMES else int(a)
            last = NAMES[b] if b in NAMES else int(b)
        else:
            first = NAMES[body] if body in NAMES else int(body)
            last = high if step_text else first
        found.update(range(first, last + 1, step))
    return found


class Line:
    def __init__(self, expression: str) -> None:
        text = MACROS.get(expression.strip().lower(), expression)
        minute, hour, dom, month, dow = text.split()
        self.minutes = _field(minute, 0, 59)
        self.hours = _field(hour, 0, 23)
        self.doms = _field(dom, 1, 31)
        self.months = _field(month, 1, 12)
        self.dows = {d % 7 for d in _field(dow, 0, 7)}
        self.dom_star = dom.startswith("*")
        self.dow_star = dow.startswith("*")
        self.wildcard = minute.startswith("*") or hour.startswith("*")
        self._days: dict[int, bool] = {}

    def day_matches(self, day_number: int) -> bool:
        found = self._days.get(day_number)
        if found is None:
            day = date(1970, 1, 1) + timedelta(days=day_number)
            dom = day.day in self.doms
            dow = (day.weekday() + 1) % 7 in self.dows
            # crontab(5): if either day field is a `*`, both must match; else either may.
            days = (dom and dow) if (self.dom_star or self.dow_star) else (dom or dow)
            found = self._days[day_number] = days and day.month in self.months
        return found

    def matches(self, wall: int) -> bool:
        """``wall``: minutes since 1970-01-01 00:00 on the local wall clock."""
        return (
            wall % 60 in self.minutes
            and wall // 60 % 24 in self.hours
            and self.day_matches(wall // 1440)
        )


def debian_fires(expression: str, zone: ZoneInfo, start: datetime, end: datetime) -> list[str]:
    """Fire times in (start, end], as ISO strings in ``zone``."""
    line = Line(expression)
    first = int(start.timestamp()) // 60 + 1
    last = int(end.timestamp()) // 60
    fires: list[str] = []

    def offset_at(minute: int) -> int:
        offset = datetime.fromtimestamp(minute * 60, zone).utcoffset()
        assert offset is not None
        return int(offset.total_seconds()) // 60

    previous_wall = first - 1 + offset_at(first - 1)
    highest = previous_wall
    minute = first
    while minute <= last:
        # Offsets change only at a quarter hour of UTC: step a quarter at a time.
        block_end = min(last, (minute // 15 + 1) * 15 - 1)
        offset = offset_at(minute)
        assert offset_at(block_end) == offset
        wall = minute + offset
        if (
            wall == previous_wall + 1
            and wall > highest
            and not any(line.day_matches(d) for d in {wall // 1440, (wall + 14) // 1440})
        ):
            previous_wall = highest = block_end + offset  # nothing can match in this block
            minute = block_end + 1
            continue
        for real in range(minute, block_end + 1):
            wall = real + offset
            if line.wildcard:
                fire = line.matches(wall)
            elif wall > previous_wall + 1:  # the clock jumped forward: skipped times run now
                fire = any(line.matches(w) for w in range(previous_wall + 1, wall + 1))
            else:
                fire = wall > highest and line.matches(wall)  # not again in a repeated hour
            if fire:
                fires.append(datetime.fromtimestamp(real * 60, zone).isoformat())
            previous_wall = wall
            highest = max(highest, wall)
        minute = block_end + 1
    return fires
