"""What a failed attempt means for its ledger row and for the run: decided here, recorded
elsewhere.

Pure: a reply (the backend's ``DeliveryError``, which says at which stage it came), the
attempt's number and moments, and the delivery settings in; the row's new state out. No
database, no clock, no sleeping: the send loop records the decision and waits as it says.

Whose fault a reply is decides what it does (RFC 5321 §4.2, RFC 3463 §3):

* **The recipient's**: a ``5xx`` to RCPT TO, or any ``5xx`` whose enhanced code is about
  the address or the mailbox (``5.1.x``, ``5.2.x``; every transaction has one recipient, so
  a refusal after the final dot with such a code is about that one). The row fails at once
  and counts as a hard bounce of the address.
* **The sender's, the session's or the content's**: a ``5xx`` to MAIL FROM, to DATA or
  after the final dot, a refused session (greeting, TLS, AUTH), and any ``5xx`` whose
  enhanced code is about the system (``5.3.x``), the protocol (``5.5.x``), the content
  (``5.6.x``) or policy (``5.7.x``). Nobody is failed or suppressed for it: the row goes
  back to the queue untouched and the issue pauses with the reply, for the operator.
* **Temporary, this recipient**: a ``4xx`` to RCPT TO (greylisting says ``450 4.2.0``,
  ``451 4.7.1`` or ``451 4.3.0``) defers that row and slows nothing.
* **Temporary, the connection**: ``421``, a lost connection, and a ``4xx`` to MAIL FROM,
  DATA or after the final dot defer the row and slow that connection down. So does a
  connection that could not be made at all; the send loop pauses the issue when no
  connection has worked for ``UNREACHABLE_SECONDS``, and a paused issue is tried again
  ``retry_first`` after its pause.

A deferred row is retried after ``retry_first`` seconds, doubling up to ``retry_max``,
until ``lifetime`` has passed since its first attempt; then it fails as expired.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from publisher.backends import DeliveryError
from publisher.config.models import DeliverySettings

UNREACHABLE_SECONDS = 60.0  # no connection for this long pauses the issue
_ENHANCED = re.compile(r"\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True, slots=True)
class Decision:
    # requeued: back to the queue as it was: the attempt was not the row's to count
    status: Literal["failed", "deferred", "requeued"]
    reply: str  # what the ledger keeps (at most 1,000 characters)
    due: float = 0.0  # when a deferred row is tried again
    bounce: bool = False  # counts as a hard bounce of the address
    slow: bool = False  # the connection should wait before its next message
    pause: str | None = None  # the issue pauses, with this reason
    unreachable: bool = False  # no session could be made at all


def enhanced_code(reply: str) -> tuple[int, int, int] | None:
    """The RFC 3463 status code a reply starts with (``5.1.1 no such user``), if any."""
    found = _ENHANCED.match(reply)
    if found is None:
        return None
    return int(found.group(1)), int(found.group(2)), int(found.group(3))


def recipients_fault(error: DeliveryError) -> bool:
    """Whether a permanent refusal is about the recipient (else: about the sender, the
    session, the system or the content)."""
    if error.stage in ("connect", "mail"):
        return False
    code = enhanced_code(error.reply)
    subject = None if code is None else code[1]
    if subject in (1, 2):
        return True
    if subject in (3, 5, 6, 7):
        return False
    return error.stage in ("rcpt", "local")


def decide(
    error: DeliveryError, attempts: int, first: float, at: float, policy: DeliverySettings
) -> Decision:
    """The new state of a row whose ``attempts``-th attempt (at ``at``; the first was at
    ``first``) failed with ``error``."""
    reply = str(error)[:1000]
    if error.stage == "connect" and error.permanent:
        return Decision("requeued", reply, slow=True, pause=reply)
    if error.permanent:
        if recipients_fault(error):
            return Decision("failed", reply, bounce=True)
        return Decision("requeued", reply, pause=reply)
    slow = error.connection or error.code == 421 or error.stage != "rcpt"
    unreachable = error.stage == "connect"
    if at - first > policy.lifetime:
        expired = f"expired after {attempts} attempts: {reply}"[:1000]
        return Decision("failed", expired, slow=slow, unreachable=unreachable)
    delay = min(policy.retry_first * 2 ** (attempts - 1), policy.retry_max)
    return Decision("deferred", reply, due=at + delay, slow=slow, unreachable=unreachable)


def backoff(times: int) -> float:
    """Seconds a connection waits after its ``times``-th slowing reply in a row: 0.5,
    doubling, at most 30."""
    return min(0.5 * 2.0 ** (times - 1), 30.0)
