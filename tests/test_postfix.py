"""End to end into a real MTA: publisher send -> Postfix on 127.0.0.1 -> Maildir."""

from __future__ import annotations

import email
from collections.abc import Callable
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import select

from publisher import store
from publisher.config import load_config

from .conftest import Ran
from .postfix import available, postfix, wait_for_files
from .smtpserver import free_port

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
