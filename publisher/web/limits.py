"""Per-client limits of the web side: sign-ups, and password guesses on /status.

Each is counted twice: in this process first (bounded memory; a flood from one client
is turned away without touching the database), then in the state database, which every
`publisher serve` of the publication shares, so the limit holds across all of them."""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from sqlalchemy.engine import Engine
from starlette.requests import Request

from publisher.store.limits import count_event, forget_before

LIMIT, PER_SECONDS = 5, 600
MAX_CLIENTS = 10_000  # client addresses remembered at most (the least recent are forgotten)


def client_key(request: Request) -> str:
    """Who is asking, for rate limits: the client address, an IPv6 client by its /64
    (one subscriber line gets a whole /64, and it costs nothing to change addresses in it)."""
    host = request.client.host if request.client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return host


class RateLimit:
    """At most ``limit`` events per ``per`` seconds per client (in this process).

    Memory is bounded: at most MAX_CLIENTS clients are remembered, the least recently
    seen forgotten first, each with at most ``limit`` times. Under a flood from more
    addresses than that, the oldest lose their count: a bounded cost, where an unbounded
    dictionary grew by 42 MB and 8 ms of CPU a request for 50,000 addresses.
    """

    def __init__(
        self,
        limit: int = LIMIT,
        per: float = PER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        clients: int = MAX_CLIENTS,
    ) -> None:
        self.seen: OrderedDict[str, deque[float]] = OrderedDict()
        self.limit, self.per, self.clock, self.clients = limit, per, clock, clients

    def allow(self, client: str) -> bool:
        """Count one event for ``client``; False when it is over its limit."""
        if self.blocked(client):
            return False
        self.seen[client].append(self.clock())
        return True

    def blocked(self, client: str) -> bool:
        """Whether ``client`` is over its limit now (counts nothing)."""
        now = self.clock()
        recent = self.seen.get(client)
        if recent is None:
            recent = self.seen[client] = deque(maxlen=self.limit)
            while len(self.seen) > self.clients:  # bounded: one over at most
                self.seen.popitem(last=False)
        else:
            self.seen.move_to_end(client)
        while recent and recent[0] <= now - self.per:  # bounded: at most `limit` times
            recent.popleft()
        return len(recent) >= self.limit


PRUNE_EVERY = 200  # events between two removals of every count older than its window


class SharedRateLimit:
    """A ``RateLimit`` of this process in front of the same limit counted in the state
    database (wall-clock time: the processes share it)."""

    def __init__(
        self,
        engine: Engine,
        kind: str,
        limit: int = LIMIT,
        per: float = PER_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine, self.kind, self.limit, self.per, self.clock = engine, kind, limit, per, clock
        self.local = RateLimit(limit, per, clock)
        self.events = 0

    @property
    def seen(self) -> OrderedDict[str, deque[float]]:
        return self.local.seen

    def allow(self, client: str) -> bool:
        """Count one event for ``client``; False when it is over its limit here or on the
        database."""
        if not self.local.allow(client):
            return False
        now = self.clock()
        with self.engine.begin() as db:
            allowed = count_event(db, self.kind, client, now, self.limit, self.per, take=True)
            self.events += 1
            if self.events % PRUNE_EVERY == 0:
                forget_before(db, now - self.per)
        return allowed

    def blocked(self, client: str) -> bool:
        if self.local.blocked(client):
            return True
        with self.engine.begin() as db:
            return not count_event(db, self.kind, client, self.clock(), self.limit, self.per,
                                   take=False)  # fmt: skip
