"""Confirmation mails: rows of the delivery ledger, sent by the sign-up request, retried by
`publisher run` when the backend could not take them."""

from __future__ import annotations

import email
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.policy import default
from pathlib import Path

import pytest
from sqlalchemy import select

from publisher import confirm, store
from publisher.backends import load_backend
from publisher.backends.memory import MemoryBackend
from publisher.build import build
from publisher.config import Publication, load_config
from publisher.delivery import RunReport, Sender
from publisher.digest.personalize import Recipient
from publisher.overview import confirmation_line, confirmation_overview

from .conftest import NOW
from .smtpserver import free_port, smtp_server
from .test_web import KEY, fetch, form_token, serving, settle, sign_up


def ledger(pub: Publication) -> list[tuple[str, str, int]]:
    """(address, status, attempts) of every confirmation mail."""
    engine = store.connect(pub.database_url)
    with engine.connect() as db:
        rows = db.execute(
            select(store.subscribers.c.address, store.deliveries.c.status,
                   store.deliveries.c.attempts)
            .join(store.deliveries, store.deliveries.c.subscriber_id == store.subscribers.c.id)
            .join(store.issues, store.issues.c.id == store.deliveries.c.issue_id)
            .where(store.issues.c.digest == confirm.CONFIRMATIONS)
            .order_by(store.subscribers.c.address)
        ).all()  # fmt: skip
    engine.dispose()
    return [(r.address, r.status, r.attempts) for r in rows]


@pytest.fixture
def smtp_site(example: Path) -> Iterator[tuple[str, Publication, int]]:
    """The example served over HTTP, its backend an SMTP server on a port where nothing
    listens yet."""
    port = free_port()
    config = (example / "schedule.yaml").read_text("utf-8")
    config = config.replace(
        "  type: maildir\n  path: outbox\n",
        f"  type: smtp\n  host: 127.0.0.1\n  port: {port}\n  tls: none\n  timeout: 2\n",
    )
    (example / "schedule.yaml").write_text(config, "utf-8")
    pub = load_config(example / "schedule.yaml")
    build(pub, NOW)
    with serving(pub) as base:
        yield base, pub, port


def test_a_refused_confirmation_is_deferred_and_retried(
    smtp_site: tuple[str, Publication, int],
) -> None:
    base, pub, port = smtp_site
    cookie, field = form_token(base)
    # The mail server is down: the visitor's answer is the usual one, the mail waits.
    status, answer = sign_up(base, cookie, field, "nia@example.org")
    assert status == 200 and b"Check your inbox" in answer
    settle(pub)
    assert ledger(pub) == [("nia@example.org", "deferred", 1)]
    # Signing up again does not queue a second mail.
    assert sign_up(base, cookie, field, "nia@example.org")[1] == answer
    assert ledger(pub) == [("nia@example.org", "deferred", 1)]

    engine = store.connect(pub.database_url)
    backend = load_backend("smtp", pub.config.backend.options, str(pub.root))

    def resume(at: float) -> list[RunReport]:
        return confirm.resume(Sender(engine, pub, [backend], clock=lambda: at), KEY, NOW)

    with smtp_server(port=port) as (_, script):
        # Before its retry time nothing is sent; after it (retry_first is 5 min) it is.
        assert resume(time.time()) == []
        later = time.time() + 301
        reports = resume(later)
        assert [(r.sent, r.status) for r in reports] == [(1, "done")]
        assert resume(later) == []
    engine.dispose()
    assert ledger(pub) == [("nia@example.org", "sent", 2)]
    assert len(script.received) == 1
    sender, recipient, data = script.received[0]
    # VERP (the example reads its returned mail): the envelope sender names the recipient.
    assert recipient == "nia@example.org"
    assert re.fullmatch(r"bounces\+[A-Za-z0-9_.-]{30,60}@kestrelbay\.example", sender)
    message = email.message_from_bytes(data, policy=default)
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"].startswith("<confirm.") and "nia" not in message["Message-ID"]
    assert message["Subject"] == "Confirm your subscription to Kestrel Bay Notes"
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    body = message.get_content()
    assert body.startswith("Hello Nia,")
    link = re.search(r"https://\S+/confirm/(\S+)", body)
    assert link is not None and "nia" not in link.group(1)
    # The link works: confirming activates the subscription.
    assert fetch(f"{base}/confirm/{link.group(1)}", data=b"")[0] == 200
    engine = store.connect(pub.database_url)
    with engine.connect() as db:
        assert {m.address: m.status for m in store.members(db, "weekly")}[
            "nia@example.org"
        ] == "active"
    engine.dispose()


def test_a_rejected_confirmation_fails_without_telling_the_visitor(
    smtp_site: tuple[str, Publication, int],
) -> None:
    base, pub, port = smtp_site
    with smtp_server(port=port) as (_, script):
        cookie, field = form_token(base)
        status, answer = sign_up(base, cookie, field, "reject-me@example.org")
        assert status == 200 and b"Check your inbox" in answer
        status, _ = sign_up(base, cookie, field, "ok@example.org")
        settle(pub)
    assert ledger(pub) == [("ok@example.org", "sent", 1), ("reject-me@example.org", "failed", 1)]
    assert [r[1] for r in script.received] == ["ok@example.org"]
    # What the operator sees (no addresses).
    engine = store.connect(pub.database_url)
    with engine.connect() as db:
        line = confirmation_line(confirmation_overview(db, datetime.now(UTC)))
    engine.dispose()
    assert line == (
        "confirmation mails, last 7 days: sent 1, deferred 0, failed 1, pending 0; "
        "2 not confirmed yet"
    )


def test_a_row_the_request_did_not_send_goes_out_after_the_grace_time(example: Path) -> None:
    """As if the web server died between writing the row and sending it."""
    pub = load_config(example / "schedule.yaml")
    engine = store.connect(pub.database_url)
    now = NOW.timestamp()
    plan = confirm.hour_issue(engine, now)
    assert confirm.hour_issue(engine, now + 60) == plan  # one issue per hour
    outbox = MemoryBackend({}, str(pub.root))

    def resume(at: float) -> list[RunReport]:
        return confirm.resume(Sender(engine, pub, [outbox], clock=lambda: at), KEY, NOW)

    # A run meanwhile closes the empty hour; the row written next opens it again.
    assert resume(now) == []
    with engine.begin() as db:
        subscriber, send = store.request_subscription(db, "ola@example.org", "", ["weekly"], now)
        assert send
        confirm.queue_row(db, plan, subscriber, now)
    early = resume(now + 10)
    assert early == [] and outbox.outbox == []
    due = now + confirm.GRACE + 1
    reports = resume(due)
    assert [(r.sent, r.status) for r in reports] == [(1, "done")]
    [(envelope, data)] = outbox.outbox
    assert envelope.recipient == "ola@example.org"
    # Derived Message-ID: a re-send after a crash is recognisably the same message.
    again = confirm.mail(pub, KEY, plan, NOW).render(Recipient("ola@example.org", "", "x"))
    first = email.message_from_bytes(data, policy=default)
    assert first["Message-ID"] == email.message_from_bytes(again, policy=default)["Message-ID"]
    with engine.connect() as db:
        status = db.execute(select(store.issues.c.status).where(store.issues.c.id == plan.issue_id))
        assert status.scalar_one() == "done"
    engine.dispose()


def test_the_publication_can_word_its_own_confirmation(example: Path) -> None:
    (example / "templates" / "email" / "confirm.txt").write_text(
        "Bonjour {{ name or 'lecteur' }} : {{ link }}\n", "utf-8"
    )
    pub = load_config(example / "schedule.yaml")
    engine = store.connect(pub.database_url)
    plan = confirm.hour_issue(engine, NOW.timestamp())
    engine.dispose()
    mail = confirm.mail(pub, KEY, plan, datetime(2026, 11, 28, tzinfo=UTC))
    data = mail.render(Recipient("zoe@example.org", "Zoé", "pid123"))
    message = email.message_from_bytes(data, policy=default)
    assert message.get_content().startswith(
        "Bonjour Zoé : https://notes.kestrelbay.example/confirm/"
    )
    assert message["Date"] == "Sat, 28 Nov 2026 00:00:00 +0000"


def test_golden_confirmation(example: Path, update_golden: bool) -> None:
    """Made by the same message builder as a digest: the bytes are fixed by the hour, the
    recipient and the key."""
    pub = load_config(example / "schedule.yaml")
    engine = store.connect(pub.database_url)
    plan = confirm.hour_issue(engine, NOW.timestamp())
    engine.dispose()
    mail = confirm.mail(pub, KEY, plan, NOW)
    data = mail.render(Recipient("zoe@example.org", "Zoë Ørsted", "pid123"))
    golden = Path(__file__).parent / "golden" / "confirm.eml"
    if update_golden:
        golden.write_bytes(data)
    assert data.decode() == golden.read_bytes().decode()
    message = email.message_from_bytes(data, policy=default)
    assert message["To"] == "Zoë Ørsted <zoe@example.org>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Content-Transfer-Encoding"] == "quoted-printable"
    assert max(len(line) for line in data.split(b"\r\n")) <= 78
