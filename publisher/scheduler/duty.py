"""One scheduler on duty among several `publisher run` on one database: the one that
composes issues, builds feeds and the site, polls sources and places tasks. The others
stand by and take over when it stops or dies.

On SQLite (one machine) duty is a lease in the ``duty`` table, renewed every third of
``state.duty_lease``: a killed scheduler's is taken over within ``duty_lease`` and one
look more. On PostgreSQL it is also an advisory lock held by a connection of its own,
which the server drops with the process, so a standby takes over at its next look; the
table then only says who holds it. Sending needs no duty: the ledger's claims keep any
number of senders apart, so a standby that briefly overlaps the one on duty sends
nobody twice.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from publisher.store import tasks

ROLE = "scheduler"
LOCK_KEY = 0x7075626C  # the advisory lock's key: b"publ"


class Duty:
    def __init__(self, engine: Engine, holder: str, lease: float) -> None:
        self.engine = engine
        self.holder = holder
        self.lease = lease
        self.locked: Connection | None = None  # PostgreSQL: the connection holding the lock

    @property
    def every(self) -> float:
        """How often to look: a third of the lease."""
        return self.lease / 3

    def check(self, now: float) -> bool:
        """Whether this scheduler is on duty now (renewing its lease, or taking over)."""
        if self.engine.dialect.name == "postgresql" and not self._lock():
            return False
        with self.engine.begin() as db:
            return tasks.take_duty(db, ROLE, self.holder, now, self.lease,
                                   force=self.locked is not None)  # fmt: skip

    def _lock(self) -> bool:
        if self.locked is not None:
            try:
                self.locked.execute(text("SELECT 1"))
                self.locked.commit()  # not left idle in a transaction between looks
                return True
            except SQLAlchemyError:  # the connection, and the lock with it, is gone
                self._drop()
        connection = self.engine.connect()
        try:
            got = connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                     {"key": LOCK_KEY}).scalar()  # fmt: skip
            connection.commit()  # a session lock: it outlives the transaction
        except SQLAlchemyError:
            connection.close()
            raise
        if not got:
            connection.close()
            return False
        self.locked = connection
        return True

    def _drop(self) -> None:
        if self.locked is not None:
            try:
                self.locked.invalidate()
                self.locked.close()
            except SQLAlchemyError:
                pass  # the connection is gone already; so is its lock
            self.locked = None

    def leave(self) -> None:
        """Off duty at once (a clean stop): a standby takes over at its next look."""
        try:
            with self.engine.begin() as db:
                tasks.give_up_duty(db, ROLE, self.holder)
        finally:
            if self.locked is not None:
                try:
                    self.locked.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
                    self.locked.commit()
                finally:
                    self._drop()
