"""The sending rate limits of schedule.yaml's ``delivery.rate``."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Engine

from publisher.config import Publication
from publisher.store import ledger


class RateLimiter:
    """Per second (in this process), per hour and per day (counted from the ledger, so
    they hold across restarts and across digests)."""

    def __init__(self, engine: Engine, pub: Publication, clock: Callable[[], float],
                 sleep: Callable[[float], None]) -> None:  # fmt: skip
        self.rate = pub.config.delivery.rate
        self.clock = clock
        self.sleep = sleep
        self.recent: list[float] = []
        self.hour = self.day = 0
        now = clock()
        if self.rate.per_hour or self.rate.per_day:
            with engine.connect() as db:
                self.hour = ledger.sent_since(db, now - 3600)
                self.day = ledger.sent_since(db, now - 86400)
        self.started = now

    def wait(self) -> bool:
        """Wait for the per-second limit; False when the hour's or day's is used up (the
        rest of the issue stays pending for a later run)."""
        rate = self.rate
        if rate.per_hour and self.hour >= rate.per_hour:
            return False
        if rate.per_day and self.day >= rate.per_day:
            return False
        if rate.per_second:
            now = self.clock()
            self.recent = [t for t in self.recent if t > now - 1.0]
            if len(self.recent) >= rate.per_second:
                self.sleep(max(0.0, self.recent[0] + 1.0 - now))
        return True

    def count(self) -> None:
        self.hour += 1
        self.day += 1
        if self.rate.per_second:
            self.recent.append(self.clock())
