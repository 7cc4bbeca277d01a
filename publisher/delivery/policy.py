"""What a failed attempt means for its ledger row: decided here, recorded elsewhere.

Pure: a reply (the backend's ``DeliveryError``), the attempt's number and moments, and the
delivery settings in; the row's new state out. No database, no clock, no sleeping; the send
loop records the decision and waits as it says.

* A ``5xx`` about the recipient fails the row at once and counts a hard bounce (after
  ``hard_bounces`` of them the address is suppressed).
* Anything else (a ``4xx``, a lost connection, a ``5xx`` about the connection) defers it:
  retried after ``retry_first`` seconds, doubling up to ``retry_max``, until ``lifetime``
  has passed since the first attempt; then it fails as expired.
* Throttling replies (421, 451, 454) and faults of the connection also slow the run down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from publisher.backends import DeliveryError
from publisher.config.models import DeliverySettings

THROTTLING = (421, 451, 454)


@dataclass(frozen=True, slots=True)
class Decision:
    status: Literal["failed", "deferred"]
    reply: str  # what the ledger keeps (at most 1,000 characters)
    due: float = 0.0  # when a deferred row is tried again
    bounce: bool = False  # counts as a hard bounce of the address
    throttle: bool = False  # the run should slow down


def decide(
    error: DeliveryError, attempts: int, first: float, at: float, policy: DeliverySettings
) -> Decision:
    """The new state of a row whose ``attempts``-th attempt (at ``at``; the first was at
    ``first``) failed with ``error``."""
    reply = str(error)[:1000]
    throttle = error.code in THROTTLING or (error.connection and not error.permanent)
    if error.permanent and not error.connection:
        return Decision("failed", reply, bounce=True, throttle=throttle)
    if at - first > policy.lifetime:
        expired = f"expired after {attempts} attempts: {reply}"[:1000]
        return Decision("failed", expired, throttle=throttle)
    delay = min(policy.retry_first * 2 ** (attempts - 1), policy.retry_max)
    return Decision("deferred", reply, due=at + delay, throttle=throttle)


def throttle_pause(times: int) -> float:
    """Seconds to wait after the ``times``-th throttling reply in a row: 0.5, doubling, at
    most 30."""
    return min(0.5 * 2.0 ** (times - 1), 30.0)
