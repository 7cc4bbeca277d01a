"""End to end into a real MTA: publisher send -> Postfix on 127.0.0.1 -> Maildir."""

from __future__ import annotations

import email
from collections import Counter
from collections.abc import Callable
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import select

from publisher import store
from publisher.backends import load_backend
from publisher.config import load_config

from .conftest import Ran
from .postfix import answer_everyone, available, postfix, wait_for_files
from .sending import send
from .smtpserver import free_port
from .test_delivery import NOW, Clock

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not available(), reason="needs Debian's postfix and root"),
]


def test_send_through_postfix(example: Path, tmp_path: Path, cli: Callable[..., Ran]) -> None:
    port = free_port()
    with postfix(port) as maildir:
        config = example / "schedule.yaml"
        config.write_text(config.read_text().replace(
            "backend:\n  type: maildir\n  path: outbox",
            f"backend:\n  type: smtp\n  host: 127.0.0.1\n  port: {port}\n  tls: none",
        ))  # fmt: skip
        pub = load_config(config)
        engine = store.connect(pub.database_url)
        people = [
            "ann@example.org",
            "bob@example.net",
            "tempfail-1@example.org",
            "reject-1@example.org",
        ]
        with engine.begin() as db:
            for address in people:
                store.add_subscriber(db, address, address.split("@")[0], "weekly", 0.0)
        done = cli("send", "weekly", "--now", "2026-11-28T12:00:00Z", cwd=example,
                   env={"PUBLISHER_SECRET": "postfix-test-secret-0123456789"})  # fmt: skip
        assert done.returncode == 1, done.stdout + done.stderr  # one recipient still deferred
        assert "sent 2, deferred 1, failed 1" in done.stdout

        files = wait_for_files(maildir / "new", 2)
        assert len(files) == 2
        delivered = {}
        for path in files:
            message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
            delivered[str(message["Delivered-To"])] = message
        assert set(delivered) == {"ann@example.org", "bob@example.net"}
        ann = delivered["ann@example.org"]
        assert ann["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert ann["Subject"].startswith("Kestrel Bay Notes: Storm Ionë")
        assert "Hello ann, here is" in ann.get_body(("html",)).get_content()  # type: ignore[union-attr]

        with engine.connect() as db:
            rows = dict(db.execute(
                select(store.subscribers.c.address, store.deliveries.c.reply)
                .join(store.deliveries, store.deliveries.c.subscriber_id == store.subscribers.c.id)
                .where(store.deliveries.c.status.in_(("deferred", "failed")))
            ).all())  # fmt: skip
        engine.dispose()
        assert "451 4.3.0" in rows["tempfail-1@example.org"]
        assert "550 5.1.1" in rows["reject-1@example.org"]


def test_greylisting_through_postfix_costs_only_its_retry(example: Path) -> None:
    """2,000 subscribers into a real Postfix, one in a hundred answered 451 at RCPT: the
    run never waits, everyone else is delivered at once, and the greylisted are delivered
    by their retry retry_first (5 min) later, when Postfix accepts them."""
    port = free_port()
    with postfix(port) as maildir:
        config = example / "schedule.yaml"
        config.write_text(config.read_text().replace(
            "backend:\n  type: maildir\n  path: outbox",
            f"backend:\n  type: smtp\n  host: 127.0.0.1\n  port: {port}\n  tls: none\n"
            "  connections: 2",
        ))  # fmt: skip
        pub = load_config(config)
        people = [f"{'tempfail-' if n % 100 == 50 else ''}r{n}@example.org" for n in range(2000)]
        engine = store.connect(pub.database_url)
        with engine.begin() as db:
            for address in people:
                store.add_subscriber(db, address, "", "weekly", 0.0)
        engine.dispose()
        backends = [load_backend("smtp", pub.config.backend.options, str(pub.root))
                    for _ in range(2)]  # fmt: skip
        clock = Clock()
        [report] = send(pub, backends, NOW, clock, clock.sleep)
        assert clock.slept == []  # nobody waited for the greylisted
        assert (report.sent, report.deferred) == (1980, 20)
        answer_everyone(maildir)
        clock.now += 300
        [retry] = send(pub, backends, NOW, clock, clock.sleep)
        assert (retry.status, retry.sent, retry.deferred) == ("done", 2000, 0)
        files = wait_for_files(maildir / "new", 2000, seconds=120)
        counts = Counter(
            str(email.message_from_bytes(f.read_bytes(), policy=policy.default)["Delivered-To"])
            for f in files
        )
        assert counts == Counter({address: 1 for address in people})


def test_bounces_that_postfix_sends_after_accepting_fail_only_whom_they_name(
    example: Path, cli: Callable[..., Ran]
) -> None:
    """Postfix says 250 to every recipient, then finds two mailboxes gone and sends real
    DSNs to the VERP envelope senders, into the return Maildir: the reader fails and
    (hard_bounces: 1) suppresses those two; nobody else changes."""
    port = free_port()
    secret = {"PUBLISHER_SECRET": "postfix-test-secret-0123456789"}
    with postfix(port) as maildir:
        returns = maildir.parent / "Returns"
        config = example / "schedule.yaml"
        config.write_text(config.read_text().replace(
            "backend:\n  type: maildir\n  path: outbox",
            f"backend:\n  type: smtp\n  host: 127.0.0.1\n  port: {port}\n  tls: none",
        ).replace("  hard_bounces: 3", "  hard_bounces: 1").replace(
            "  maildir: var/returns", f"  maildir: {returns}"
        ))  # fmt: skip
        pub = load_config(config)
        engine = store.connect(pub.database_url)
        people = ["ann@example.org", "bob@example.net", "gone-1@example.org", "gone-2@example.net"]
        with engine.begin() as db:
            for address in people:
                store.add_subscriber(db, address, "", "weekly", 0.0)
        done = cli("send", "weekly", "--now", "2026-11-28T12:00:00Z", cwd=example, env=secret)
        assert "sent 4, deferred 0, failed 0" in done.stdout, done.stdout + done.stderr
        assert len(wait_for_files(maildir / "new", 2)) == 2
        dsns = wait_for_files(returns / "new", 2)
        assert len(dsns) == 2, (maildir.parent / "maillog").read_text()[-3000:]
        fetched = cli("bounces", "fetch", cwd=example, env=secret)
        assert fetched.returncode == 0, fetched.stderr
        assert "returns: 2 message(s) read; acted on: 2 hard" in fetched.stdout, fetched.stdout
        with engine.connect() as db:
            rows = db.execute(
                select(store.subscribers.c.key, store.deliveries.c.status,
                       store.subscribers.c.suppressed_at.is_not(None))
                .join(store.deliveries, store.deliveries.c.subscriber_id == store.subscribers.c.id)
            ).all()  # fmt: skip
        engine.dispose()
        assert {tuple(r) for r in rows} == {
            ("ann@example.org", "sent", False), ("bob@example.net", "sent", False),
            ("gone-1@example.org", "failed", True), ("gone-2@example.net", "failed", True),
        }  # fmt: skip
        assert len(list((returns / ".processed" / "cur").iterdir())) == 2
