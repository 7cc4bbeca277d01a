"""Confirmation mails of the double opt-in, sent through the configured backend and
recorded in the same delivery ledger as the digests.

Each hour's confirmations are one issue of the reserved name ``~confirm`` (no digest can
be called that: digest names are lower-case letters, digits, ``-`` and ``_``), numbered
by the hour since the epoch. A subscriber gets at most one confirmation per hour, so the
ledger's one row per (issue, recipient) is exactly one row per confirmation mail.

The sign-up request writes the row and sends it at once; if the backend defers it, or the
server dies before the row is recorded, ``publisher run`` retries it with the same
backoff and lifetime as a digest, after ``GRACE`` seconds. The message is made again from
the subscriber's public id at each attempt, with the same Message-ID.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import urlsplit

from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from publisher.backends.base import Message
from publisher.config import Publication
from publisher.delivery import Outgoing, Plan, RunReport, Sender, deliver, waiting_issues
from publisher.digest import dkim
from publisher.digest.issue import Window
from publisher.digest.message import build_message
from publisher.digest.personalize import Recipient, dkim_keys
from publisher.digest.templates import environment, render_template
from publisher.headers import clean_text, encode_text, format_address, parse_sender
from publisher.store import epoch, ledger, moment
from publisher.tokens import Signer

CONFIRMATIONS = "~confirm"  # the ledger's issue name for confirmation mails
CONFIRM = "confirm"  # the token purpose ("salt") of confirmation links
GRACE = 120.0  # seconds the sign-up request has to send its mail before a run retries it
TEMPLATE = "confirm.txt"  # in the publication's templates folder, else the package's
DEFAULTS = Path(__file__).parent / "defaults" / "email"


def confirm_url(pub: Publication, token: str) -> str:
    """On the host that serves the unsubscribe links: the web side of this publication."""
    base = pub.config.email.unsubscribe_url or pub.config.site.base_url
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}/confirm/{token}"


def hour_issue(engine: Engine, now: float) -> Plan:
    """This hour's confirmation issue, made if needed (whoever makes it first)."""
    number = int(now // 3600)
    start, end = moment(number * 3600.0), moment((number + 1) * 3600.0)
    assert start is not None and end is not None
    for _ in range(3):  # bounded: only a concurrent writer makes us look again
        with engine.begin() as db:
            found = ledger.find_issue(db, CONFIRMATIONS, number)
            if found is not None:
                return Plan(int(found.id), number, Window(start, end))
        try:
            with engine.begin() as db:
                window = (epoch(start), epoch(end))
                issue_id = ledger.create_empty_issue(db, CONFIRMATIONS, number, window, now)
        except IntegrityError:
            continue
        return Plan(issue_id, number, Window(start, end))
    raise RuntimeError("could not open this hour's confirmation issue")


def queue_row(db: Connection, plan: Plan, subscriber_id: int, now: float) -> None:
    """The ledger row of one confirmation mail, due for a run after ``GRACE`` seconds
    (the request sends it before then)."""
    if ledger.add_row(db, plan.issue_id, subscriber_id, now + GRACE):
        # `publisher run` may have closed the hour while it was empty; it has mail again.
        ledger.set_issue_status(db, plan.issue_id, "sending")


@dataclass(frozen=True)
class ConfirmationMail:
    """What ``deliver`` needs of a message source: the envelope sender, and per recipient
    the Message-ID and the finished bytes."""

    pub: Publication
    signer: Signer
    number: int
    date: datetime
    sender_name: str
    sender: str
    dkim_keys: list[dkim.Key]
    env: SandboxedEnvironment  # made once: it compiles confirm.txt once, not per message

    def message_id(self, recipient: Recipient) -> str:
        key = f"{CONFIRMATIONS}\0{self.number}\0{recipient.address}"
        digest = hashlib.sha256(key.encode()).hexdigest()
        return f"<confirm.{self.number}.{digest[:24]}@{self.sender.rsplit('@', 1)[1]}>"

    def render(self, recipient: Recipient) -> bytes:
        return bytes(self.letter(recipient))

    def letter(self, recipient: Recipient) -> Message:
        site = self.pub.config.site
        # Issued at the sign-up's hour, the same at every retry; the web side accepts it
        # for web.confirm_within.
        token = self.signer.sign(CONFIRM, recipient.id, issued=self.number * 3600)
        link = confirm_url(self.pub, token)
        text = render_template(
            self.env,
            TEMPLATE,
            {"site": site, "link": link, "name": clean_text(recipient.name, 100)},
        )
        head = [
            f"From: {format_address(self.sender_name or site.title, self.sender)}",
            f"Subject: {encode_text(f'Confirm your subscription to {site.title}')}",
            f"Date: {format_datetime(self.date)}",
            # RFC 3834: made by a program; out-of-office replies should not answer it.
            "Auto-Submitted: auto-generated",
        ]
        message_id = self.message_id(recipient)
        template = build_message(head, [("plain", text)], {}, message_id)
        headers = (
            f"To: {format_address(recipient.name, recipient.address)}\r\n"
            f"Message-ID: {message_id}\r\n"
        ).encode("ascii")
        message = template.personalize(headers, {})
        keys = self.dkim_keys
        return dkim.Signer(template, keys).sign(message, headers) if keys else message


def mail(pub: Publication, signer: Signer, plan: Plan, now: datetime) -> ConfirmationMail:
    """From the first digest's sender: the address subscribers know the publication by."""
    site = pub.config.site
    name, address = (
        parse_sender(pub.config.digests[0].sender)
        if pub.config.digests
        else (site.title, site.author.email or "")
    )
    env = environment(pub.templates_dir, DEFAULTS)
    return ConfirmationMail(pub, signer, plan.number, now, name, address, dkim_keys(pub), env)


def send(
    sender: Sender, signer: Signer, plan: Plan, subscriber_id: int, now: datetime
) -> RunReport:
    """Send one subscriber's confirmation now (the sign-up request does this)."""
    message = mail(sender.pub, signer, plan, now)
    outgoing = Outgoing(CONFIRMATIONS, plan, message, None, signer)
    return deliver(sender, outgoing, only=subscriber_id)


def resume(sender: Sender, signer: Signer, now: datetime) -> list[RunReport]:
    """Retry every confirmation that is due (deferred, or not sent by its request) and
    mark finished hours done; a report for each hour that had mail due. What
    ``publisher run`` does when a retry is due."""
    reports = []
    for plan in waiting_issues(sender.engine, CONFIRMATIONS, sender.clock()):
        if sender.should_stop():
            break
        message = mail(sender.pub, signer, plan, now)
        reports.append(deliver(sender, Outgoing(CONFIRMATIONS, plan, message, None, signer)))
    return reports
