"""Sending from a test: a digest's due issues through ``send_digest``, as `publisher send`
does, with the test's clock."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from publisher import store
from publisher.backends import Backend
from publisher.config import Publication
from publisher.delivery import RunReport, Sender, send_digest
from publisher.tokens import Signer

KEY = Signer([b"delivery-test-key-0123456789"])


def send(
    pub: Publication,
    backends: Sequence[Backend],
    now: datetime,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] | None = None,
    period: datetime | None = None,
    signer: Signer = KEY,
) -> list[RunReport]:
    """Every report of one `publisher send` of the publication's first digest at ``now``."""
    engine = store.connect(pub.database_url)
    sender = Sender(engine, pub, backends, clock=clock or (lambda: now.timestamp()))
    if sleep is not None:
        sender.sleep = sleep
    try:
        return send_digest(sender, pub.config.digests[0], now, signer, period)
    finally:
        engine.dispose()
