"""The return mailbox on a real IMAP server (Dovecot on 127.0.0.1): what is understood is
acted on and moved to the processed folder, what is not stays in the INBOX, marked seen."""

from __future__ import annotations

import imaplib
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import NOW, Ran
from .dovecot import PASSWORD, USER, available, dovecot
from .smtpserver import Script, free_port
from .test_bounces import ENV, envelopes, publication, returned, states, token_of
from .test_returns import JUNK, POSTFIX_DSN

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not available(), reason="needs Debian's dovecot-imapd and root"),
]


def test_the_return_mailbox_over_imap(
    example: Path, server: tuple[int, Script], cli: Callable[..., Ran]
) -> None:
    port, script = server
    imap_port = free_port()
    with dovecot(imap_port) as inbox:
        pub = publication(example, port)
        config = example / "schedule.yaml"
        config.write_text(config.read_text().replace(
            "  maildir: var/returns\n",
            f"  imap:\n    host: 127.0.0.1\n    port: {imap_port}\n    tls: none\n"
            f"    user: {USER}\n    password_env: TEST_IMAP_PASSWORD\n",
        ))  # fmt: skip
        env = {**ENV, "TEST_IMAP_PASSWORD": PASSWORD}
        assert cli("send", "weekly", "--now", NOW.isoformat(), cwd=example, env=env).returncode == 0
        token = token_of(envelopes(script)["gone@example.org"])
        (inbox / "new" / "1.hard").write_bytes(
            returned(POSTFIX_DSN, token, "gone@example.org", "gone@example.org")
        )
        (inbox / "new" / "2.junk").write_bytes(JUNK.encode())
        wrong = cli("bounces", "fetch", cwd=example, env={**env, "TEST_IMAP_PASSWORD": "no"})
        assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
        assert (
            wrong.stderr.startswith("returns: 127.0.0.1:") and len(wrong.stderr.splitlines()) == 1
        )
        fetched = cli("bounces", "fetch", cwd=example, env=env)
        assert fetched.returncode == 0, fetched.stderr
        assert "returns: 2 message(s) read; acted on: 1 hard; 0 changed nothing; 1 left" in (
            fetched.stdout
        )
        assert states(pub)["gone@example.org"] == ("active", 1, False)
        again = cli("bounces", "fetch", cwd=example, env=env)
        assert "returns: 0 message(s) read" in again.stdout  # the junk is seen: not read again
        mailbox = imaplib.IMAP4("127.0.0.1", imap_port, timeout=10)
        try:
            mailbox.login(USER, PASSWORD)
            assert mailbox.select("INBOX")[1] == [b"1"]  # the junk, for a person
            assert mailbox.select('"processed"')[1] == [b"1"]  # the bounce, moved
        finally:
            mailbox.logout()
