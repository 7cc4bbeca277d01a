"""What a returned message or an ESP's report does to the state: the same for a mailbox
and for every webhook.

* **Hard bounce**: the issue's row for the recipient is failed, and the bounce counts
  toward ``delivery.hard_bounces`` (suppressed from that many on).
* **Soft bounce**: counted; ``returns.soft_bounces`` of them within ``soft_window``
  suppress the address.
* **Complaint** and **mailed unsubscribe**: every subscription of the person ends at once
  (a complaint is kept as such: status counts it).
* Each report is acted on once (by its key), whoever reads it again.

Who it is about comes first from the VERP token of the envelope sender it came back to
(signed: a forged one names nobody), then from the Message-ID of ours it quotes, last
from the addresses it names, only if they are subscribers. After a hard bounce or a
complaint the issue's rates are checked: a digest whose latest issue passes
``returns.complaint_rate`` or ``bounce_rate`` is held (``store.returns.hold``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Connection

from publisher.config import Publication
from publisher.returns import verp
from publisher.returns.classify import Decision
from publisher.store import ledger
from publisher.store import returns as returned
from publisher.tokens import UNSUBSCRIBE, Signer

_MESSAGE_ID = re.compile(r"<([a-z0-9][a-z0-9_-]{0,63})-(\d{1,9})\.[0-9a-f]{24}@[^<>@\s]+>")


@dataclass(frozen=True)
class Report:
    """One thing that came back: a message from the mailbox or an event of an ESP."""

    key: str  # what makes it the same report when it is read again
    source: str  # mailbox | ses | postmark | mailgun
    decision: Decision


@dataclass(frozen=True)
class Outcome:
    kind: str
    acted: bool  # False: it was acted on before, or it is about nobody of ours
    what: str  # one line for the operator, without addresses or tokens


def act(db: Connection, pub: Publication, signer: Signer, report: Report, now: float) -> Outcome:
    """Change the state as ``report`` says, in the caller's transaction."""
    decision = report.decision
    kind = decision.kind
    if kind not in returned.KINDS:
        return Outcome(kind, False, f"{kind}: nothing to change")
    if returned.seen(db, report.key):
        return Outcome(kind, False, f"{kind}: acted on before")
    if kind == "unsubscribe":
        subscriber, issue = _asking(db, signer, decision), None
    else:
        subscriber, issue = _about(db, signer, decision)
    returned.record(db, report.key, now, report.source, kind, subscriber, issue,
                    decision.reason or kind)  # fmt: skip
    if subscriber is None:
        return Outcome(kind, False, f"{kind}: about nobody subscribed here")
    settings = pub.config.returns
    what = f"{kind}: {decision.reason}" if decision.reason else kind
    if kind == "hard":
        if issue is not None:
            returned.fail_delivery(db, issue, subscriber, f"returned: {decision.reason}", now)
        ledger.count_hard_bounce(db, subscriber, pub.config.delivery.hard_bounces,
                                 f"returned: {decision.reason}"[:1000], now)  # fmt: skip
    elif kind == "soft" and settings is not None:
        count = returned.soft_bounces_since(db, subscriber, now - settings.soft_window)
        if count >= settings.soft_bounces:
            days = settings.soft_window / 86400
            returned.suppress(
                db, subscriber, f"{count} soft bounces in {days:g} days: {decision.reason}", now
            )
            what += "; suppressed"
    else:  # complaint, unsubscribe
        returned.unsubscribe_all(db, subscriber, now)
        what += "; unsubscribed"
    if issue is not None and kind in ("hard", "complaint"):
        brake = check_brake(db, pub, issue, now)
        if brake is not None:
            what += f"; digest held: {brake}"
    return Outcome(kind, True, what)


def check_brake(db: Connection, pub: Publication, issue_id: int, now: float) -> str | None:
    """Hold the digest of ``issue_id`` if it is the digest's latest issue and its
    complaint or bounce rate passes the limit; the reason, when it did now."""
    settings = pub.config.returns
    digest = returned.digest_of(db, issue_id)
    if settings is None or digest is None or digest not in {d.name for d in pub.config.digests}:
        return None
    latest = ledger.last_issue(db, digest)
    if latest is None or returned.issue_named(db, digest, latest.number) != issue_id:
        return None
    reached = returned.reached(db, issue_id)
    if reached < settings.min_sent:
        return None
    counts = returned.counts(db, issue_id)
    reason = None
    if counts["complaint"] / reached > settings.complaint_rate:
        reason = (
            f"issue {latest.number}: {counts['complaint']} complaints of {reached} "
            f"({counts['complaint'] / reached:.2%}, limit {settings.complaint_rate:.2%})"
        )
    else:
        bounced = returned.failed(db, issue_id)
        if bounced / reached > settings.bounce_rate:
            reason = (
                f"issue {latest.number}: {bounced} bounced of {reached} "
                f"({bounced / reached:.2%}, limit {settings.bounce_rate:.2%})"
            )
    if reason is None or not returned.hold(db, digest, reason, now):
        return None
    if ledger.issue_status(db, issue_id) == "sending":
        ledger.set_issue_status(db, issue_id, "paused", f"held: {reason}", now)
    return reason


def _about(db: Connection, signer: Signer, decision: Decision) -> tuple[int | None, int | None]:
    """(subscriber, issue) of a bounce or a complaint."""
    if decision.token is not None:
        named = verp.read(decision.token, signer)
        if named is None:
            return None, None  # not a token of ours: forged, or another sender's
        return returned.recipient(db, named[0], named[1]), named[0]
    issue = _issue_of(db, decision.original)
    for address in decision.addresses:
        subscriber = returned.by_address(db, address)
        if subscriber is not None:
            return subscriber, issue if issue is not None else returned.latest_issue_to(
                db, subscriber
            )
    return None, issue


def _asking(db: Connection, signer: Signer, decision: Decision) -> int | None:
    """Who a mailed unsubscribe is from: the signed token in its address or subject, else
    its From address if that is a subscriber's."""
    if decision.token is not None:
        public_id = signer.verify(UNSUBSCRIBE, decision.token)
        if public_id is not None:
            found = returned.by_public_id(db, public_id)
            if found is not None:
                return found
    for address in decision.addresses:
        found = returned.by_address(db, address)
        if found is not None:
            return found
    return None


def _issue_of(db: Connection, message_id: str | None) -> int | None:
    """The issue a Message-ID of ours names (``<digest-number.hash@domain>``)."""
    match = _MESSAGE_ID.fullmatch(message_id or "")
    if match is None:
        return None
    return returned.issue_named(db, match.group(1), int(match.group(2)))
