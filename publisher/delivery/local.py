"""When each recipient's row of a scheduled issue falls due: with ``deliver_at: local``, at
the schedule's hour in the recipient's own time zone (those without one: the schedule's
zone), and never inside the digest's ``quiet`` hours of the recipient's zone.

The issue is still one issue, composed once: when its hour comes in the first zone of its
recipients. Rows are due by zone, so the work is per zone (a few hundred at most), never
per subscriber; the ledger sets every row's due time in one statement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from sqlalchemy.engine import Engine

from publisher.config import Digest
from publisher.localtime import QuietHours, compose_moment, local_moment, zone_of
from publisher.store import zone_counts, zones_present


def zones_in_use(engine: Engine, digest: Digest, own: tzinfo) -> list[tzinfo]:
    """The zones of the digest's list's active members (the schedule's for those
    without)."""
    with engine.connect() as db:
        names = zones_present(db, digest.list_name)
    return [zone_of(name, own) for name in names]


def due_times(
    digest: Digest,
    period: datetime,
    now: datetime,
    zones: Iterable[str | None],
    own: tzinfo,
) -> Mapping[str | None, float] | None:
    """When the first copy to each zone's recipients is due (epoch seconds), or None
    when everyone's is due at once: a digest neither local nor with quiet hours."""
    if digest.deliver_at != "local" and digest.quiet is None:
        return None
    return {name: first_due(digest, period, now, name, own).timestamp() for name in zones}


def first_due(
    digest: Digest, period: datetime, now: datetime, name: str | None, own: tzinfo
) -> datetime:
    """When the first copy of the issue of ``period``, composed at ``now``, is due to a
    recipient in zone ``name``: the Date of their copy too."""
    quiet = None if digest.quiet is None else QuietHours.parse(digest.quiet)
    zone = zone_of(name, own)
    at = local_moment(period, zone) if digest.deliver_at == "local" else now
    if at.timestamp() < now.timestamp():
        at = now  # composed late (after downtime): those whose hour has passed, now
    if quiet is not None:
        at = quiet.release(at, zone)
    return at


def quiet_hold(digest: Digest, own: tzinfo) -> Callable[[float, str | None], float] | None:
    """For a digest with quiet hours, when a retry due at a moment (epoch seconds) may go
    to a recipient in a zone (None: the schedule's): at the end of their quiet hours if it
    falls inside. None without quiet hours."""
    if digest.quiet is None:
        return None
    hours = QuietHours.parse(digest.quiet)

    def hold(due: float, name: str | None) -> float:
        return hours.release(datetime.fromtimestamp(due, UTC), zone_of(name, own)).timestamp()

    return hold


@dataclass(frozen=True)
class HourCount:
    """How many rows fall due in the hour from ``hour`` (UTC)."""

    hour: datetime
    rows: int

    def as_dict(self) -> dict[str, str | int]:
        return {"hour": self.hour.isoformat(), "rows": self.rows}


def by_hour(due: Mapping[str | None, float], counts: Mapping[str | None, int]) -> list[HourCount]:
    """The rows of each zone, by the hour (UTC) their first copy falls due, in order."""
    pairs = [(due[name], rows) for name, rows in counts.items() if name in due and rows]
    return hours_ahead(pairs, 0.0)


def planned_hours(
    engine: Engine, digest: Digest, period: datetime, own: tzinfo
) -> tuple[datetime, list[HourCount]]:
    """What `plan` shows of a scheduled issue of a local-time or quiet-hours digest: when
    it is composed, and how many rows fall due in each hour after."""
    with engine.connect() as db:
        counts = zone_counts(db, digest.list_name)
    zones = [zone_of(name, own) for name in counts]
    composed = compose_moment(period, zones) if digest.deliver_at == "local" else period
    due = due_times(digest, period, composed, counts, own) or {}
    return composed, by_hour(due, counts)


def hours_ahead(pairs: Iterable[tuple[float, int]], now: float) -> list[HourCount]:
    """(due time, rows) by the hour (UTC) they fall due in; rows due already count in the
    hour of ``now``."""
    hours: dict[datetime, int] = {}
    for at, rows in pairs:
        hour = datetime.fromtimestamp(max(at, now), UTC).replace(minute=0, second=0,
                                                                 microsecond=0)  # fmt: skip
        hours[hour] = hours.get(hour, 0) + rows
    return [HourCount(hour, hours[hour]) for hour in sorted(hours)]
