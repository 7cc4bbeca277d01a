"""The sending rate limits of schedule.yaml's ``delivery.rate``, held across every sender
on the database.

* **Per hour and per day** are counted from the ledger when a sender claims rows: messages
  sent in the hour (or day), plus the rows claimed by any sender (this one too: its next
  batch is claimed while the last is still going out), which may go out any moment. A
  sender claims no more than what is left, so the limits hold across restarts,
  digests, processes and machines. On PostgreSQL claims under a limit take an advisory
  lock, one at a time, so that two senders never take the same remainder (SQLite's
  write lock does the same).
* **Per second** is shared by the senders that hold claims: each paces itself at its part
  of the limit, re-counted at every claim.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.engine import Connection

from publisher.config.models import RateLimits
from publisher.store import ledger

# Rows claimed at a time without a rate limit, per connection of the sender and in all:
# small enough that several senders share an issue, large enough that a claim (a few
# statements) costs little per message.
PER_CONNECTION = 100
BATCH = 500
RATE_LOCK = 0x70756272  # PostgreSQL's advisory lock over claims under a limit


class RateLimiter:
    def __init__(self, rate: RateLimits, clock: Callable[[], float],
                 sleep: Callable[[float], None]) -> None:  # fmt: skip
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.last: float | None = None  # when this sender last handed a message over
        self.per_second = float(rate.per_second or 0)

    def claim_size(self, db: Connection, now: float, wanted: int, owner: str) -> int:
        """How many rows this sender may claim now (0: the hour's or the day's limit is
        used up; the rest of the issue stays for a later run)."""
        rate = self.rate
        size = min(wanted, BATCH)
        if rate.per_second:
            senders = ledger.live_senders(db, now, besides=owner) + 1  # and this one
            self.per_second = rate.per_second / senders
            size = min(size, max(1, rate.per_second * 10))  # ~10 s of sending a claim
        if (rate.per_hour or rate.per_day) and db.dialect.name == "postgresql":
            # Claims under a limit one at a time, across every sender and machine: two
            # that counted at once would each take the same remainder. Released when
            # the claim's transaction ends.
            db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": RATE_LOCK})
        for limit, seconds in ((rate.per_hour, 3600), (rate.per_day, 86400)):
            if limit:
                used = ledger.sent_or_claimed(db, now - seconds, now)
                size = min(size, max(0, limit - used))
        return size

    def wait(self) -> None:
        """Wait for this sender's part of the per-second limit: messages evenly spaced."""
        if not self.per_second:
            return
        now = self.clock()
        if self.last is not None:
            gap = self.last + 1.0 / self.per_second - now
            if gap > 0:
                self.sleep(gap)
                now = self.clock()
        self.last = now
