"""Returned mail acted on: each message leaves with a VERP envelope sender, what comes
back to it (bounces an hour after the server said 250, complaints, mailed unsubscribes)
changes the subscriber it names and nobody else, and a digest whose complaint or bounce
rate passes its limit is held. Counted at the SMTP server, per envelope recipient."""

from __future__ import annotations

import email
import json
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from email import policy
from pathlib import Path

from sqlalchemy import select

from publisher import store
from publisher.config import Publication, load_config
from publisher.returns import verp
from publisher.tokens import Signer

from . import test_returns as corpus
from .conftest import NOW, Ran
from .smtpserver import Script
from .test_issue_truth import article

SECRET = "a-secret-of-the-bounce-tests-0123"
ENV = {"PUBLISHER_SECRET": SECRET}
KEY = Signer([SECRET.encode()])
PEOPLE = ("ann", "gone", "crowded", "annoyed", "reader", "pat")


def publication(example: Path, port: int, returns: str = "") -> Publication:
    config = example / "schedule.yaml"
    text = config.read_text().replace(
        "backend:\n  type: maildir\n  path: outbox",
        f"backend:\n  type: smtp\n  host: 127.0.0.1\n  port: {port}\n  tls: none",
    )
    text = text.replace("  soft_bounces: 5 ", "  soft_bounces: 2 ") + returns
    config.write_text(text)
    pub = load_config(config)
    engine = store.connect(pub.database_url)
    with engine.begin() as db:
        for name in PEOPLE:
            store.add_subscriber(db, f"{name}@example.org", name.title(), "weekly", 0.0)
    engine.dispose()
    return pub


def envelopes(script: Script) -> dict[str, str]:
    """Envelope sender per recipient, of what the server received."""
    return {rcpt: mail_from for mail_from, rcpt, _ in script.received}


def token_of(sender: str) -> str:
    local = sender.split("@")[0]
    assert local.startswith("bounces+")
    return local[len("bounces+") :]


def returned(template: str, token: str, address: str, old: str, tag: str = "") -> bytes:
    """A message of the corpus, as it comes back for ``address`` to its VERP address."""
    text = template.replace("AbC123tok", token).replace(old, address)
    text = text.replace("notes.example", "kestrelbay.example")
    return (f"X-Tag: {tag}\n" + text).encode()


def deliver_returns(pub: Publication, messages: dict[str, bytes]) -> Path:
    maildir = pub.root / "var" / "returns"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    for name, raw in messages.items():
        (maildir / "new" / name).write_bytes(raw)
    return maildir


def states(pub: Publication) -> dict[str, tuple[str, int, bool]]:
    """Per address: the weekly subscription, hard bounces, suppressed."""
    engine = store.connect(pub.database_url)
    with engine.connect() as db:
        rows = db.execute(
            select(store.subscribers.c.key, store.subscriptions.c.status,
                   store.subscribers.c.hard_bounces, store.subscribers.c.suppressed_at)
            .join(store.subscriptions,
                  store.subscriptions.c.subscriber_id == store.subscribers.c.id)
        ).all()  # fmt: skip
    engine.dispose()
    return {key: (status, bounces, at is not None) for key, status, bounces, at in rows}


def mailto_subject(data: bytes) -> str:
    message = email.message_from_bytes(data, policy=policy.default)
    header = str(message["List-Unsubscribe"])
    mailto = header.split("<mailto:", 1)[1].rstrip(">")
    return mailto.split("?subject=", 1)[1].replace("%20", " ")


def test_each_message_leaves_with_an_envelope_sender_naming_its_recipient(
    example: Path, server: tuple[int, Script], cli: Callable[..., Ran]
) -> None:
    port, script = server
    pub = publication(example, port)
    done = cli("send", "weekly", "--now", NOW.isoformat(), cwd=example, env=ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    senders = envelopes(script)
    assert len(senders) == len(PEOPLE) == len(set(senders.values()))  # one each, distinct
    engine = store.connect(pub.database_url)
    with engine.connect() as db:
        ids = dict(db.execute(select(store.subscribers.c.key, store.subscribers.c.public_id)).all())
    engine.dispose()
    for address, sender in senders.items():
        assert sender.endswith("@kestrelbay.example") and len(sender.split("@")[0]) <= 64
        assert address not in sender  # opaque: no address inside
        assert verp.read(token_of(sender), KEY) == (1, ids[address])
    # Forged or damaged, a token names nobody.
    some = token_of(next(iter(senders.values())))
    assert verp.read(some[:-1] + ("A" if some[-1] != "A" else "B"), KEY) is None
    assert verp.read(some, Signer([b"another-secret-0123456789"])) is None


def test_what_comes_back_changes_whom_it_names_and_nobody_else(
    example: Path, server: tuple[int, Script], cli: Callable[..., Ran]
) -> None:
    port, script = server
    pub = publication(example, port)
    assert cli("send", "weekly", "--now", NOW.isoformat(), cwd=example, env=ENV).returncode == 0
    senders = envelopes(script)
    token = {address.split("@")[0]: token_of(sender) for address, sender in senders.items()}
    reader_mail = next(data for _, rcpt, data in script.received if rcpt.startswith("reader@"))
    unsubscribe_reply = (
        "To: unsubscribe@kestrelbay.example\n"
        "From: Someone Forwarded <alias@elsewhere.example>\n"  # not a subscriber's address
        f"Subject: {mailto_subject(reader_mail)}\n\nPlease.\n"
    ).encode()
    junk = corpus.JUNK.replace("notes.example", "kestrelbay.example").encode()
    maildir = deliver_returns(pub, {
        "1.hard": returned(corpus.POSTFIX_DSN, token["gone"], "gone@example.org",
                           "gone@example.org"),
        "2.soft": returned(corpus.DELAYED_DSN, token["crowded"], "crowded@example.org",
                           "full@example.org", "first"),
        "3.soft": returned(corpus.DELAYED_DSN, token["crowded"], "crowded@example.org",
                           "full@example.org", "second"),
        "4.complaint": returned(corpus.ARF, token["annoyed"], "annoyed@example.org",
                                "annoyed@mailbox.example"),
        "5.away": returned(corpus.OUT_OF_OFFICE, token["pat"], "pat@example.org",
                           "pat@example.org"),
        "6.unsubscribe": unsubscribe_reply,
        "7.junk": junk,
    })  # fmt: skip
    fetched = cli("bounces", "fetch", "--now", NOW.isoformat(), cwd=example, env=ENV)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert ("returns: 7 message(s) read; acted on: 1 complaint, 1 hard, 2 soft, 1 unsubscribe; "
            "1 changed nothing; 1 left for a person") in fetched.stdout  # fmt: skip
    assert token["gone"] not in fetched.stdout  # tokens are never shown
    assert states(pub) == {
        "ann@example.org": ("active", 0, False),
        "gone@example.org": ("active", 1, False),  # counted toward hard_bounces (3)
        "crowded@example.org": ("active", 0, True),  # 2 soft bounces in 30 days: suppressed
        "annoyed@example.org": ("unsubscribed", 0, False),
        "reader@example.org": ("unsubscribed", 0, False),
        "pat@example.org": ("active", 0, False),  # an out-of-office is not a bounce
    }
    # Understood: moved, never deleted. Not understood: left in the mailbox, unread.
    assert sorted(p.name.split(":")[0] for p in (maildir / ".processed" / "cur").iterdir()) == [
        "1.hard", "2.soft", "3.soft", "4.complaint", "5.away", "6.unsubscribe",
    ]  # fmt: skip
    assert [p.name for p in (maildir / "cur").iterdir()] == ["7.junk:2,"]
    assert list((maildir / "new").iterdir()) == []

    # The same bounce read again (a crash before it was moved) changes nothing twice.
    (maildir / "new" / "1.hard").write_bytes(
        returned(corpus.POSTFIX_DSN, token["gone"], "gone@example.org", "gone@example.org")
    )
    again = cli("bounces", "fetch", "--now", NOW.isoformat(), cwd=example, env=ENV)
    assert "acted on: nothing; 1 changed nothing" in again.stdout
    assert states(pub)["gone@example.org"] == ("active", 1, False)

    status = json.loads(cli("status", "--json", cwd=example, env=ENV).stdout)
    [first] = status["digests"][0]["issues"]
    assert (first["bounces"], first["complaints"], first["unsubscribes"]) == (
        {"hard": 1, "soft": 2}, 1, 2,
    )  # fmt: skip
    assert (first["sent"], first["failed"]) == (5, 1)  # the bounced row is failed now
    shown = cli("status", cwd=example, env=ENV).stdout
    assert "came back: 1 hard bounce(s), 2 soft, 1 complaint(s); 2 unsubscribed" in shown

    # The next issue reaches only those who still want it; a re-import changes nothing.
    (example / "people.csv").write_text(
        "email,name\n" + "".join(f"{n}@example.org,{n}\n" for n in PEOPLE)
    )
    imported = cli("subscribers", "import", "people.csv", "--list", "weekly", cwd=example,
                   env=ENV)  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    script.received.clear()
    article(example, "after", (NOW + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M"))
    later = (NOW + timedelta(hours=2)).isoformat()
    assert cli("send", "weekly", "--now", later, cwd=example, env=ENV).returncode == 0
    counts = Counter(rcpt for _, rcpt, _ in script.received)
    assert counts == {"ann@example.org": 1, "gone@example.org": 1, "pat@example.org": 1}


def test_a_forged_bounce_names_nobody(
    example: Path, server: tuple[int, Script], cli: Callable[..., Ran]
) -> None:
    port, script = server
    pub = publication(example, port)
    assert cli("send", "weekly", "--now", NOW.isoformat(), cwd=example, env=ENV).returncode == 0
    real = token_of(envelopes(script)["ann@example.org"])
    forged = real.split(".")[0] + ".AAAAAAAAAAAAAAAAAAAAAA"  # ann's id, a made-up signature
    deliver_returns(pub, {
        "forged": returned(corpus.POSTFIX_DSN, forged, "ann@example.org", "gone@example.org"),
        "forged-complaint": returned(corpus.ARF, forged, "ann@example.org",
                                     "annoyed@mailbox.example"),
    })  # fmt: skip
    fetched = cli("bounces", "fetch", "--now", NOW.isoformat(), cwd=example, env=ENV)
    assert "acted on: nothing; 2 changed nothing" in fetched.stdout
    assert states(pub)["ann@example.org"] == ("active", 0, False)


def test_a_complaint_rate_past_the_limit_holds_the_digest_until_resumed(
    example: Path, server: tuple[int, Script], cli: Callable[..., Ran]
) -> None:
    port, script = server
    pub = publication(example, port, "  min_sent: 5\n")
    assert cli("send", "weekly", "--now", NOW.isoformat(), cwd=example, env=ENV).returncode == 0
    token = token_of(envelopes(script)["annoyed@example.org"])
    # Without the VERP token: the complaint quotes our message, which names the issue.
    message_id = next(
        email.message_from_bytes(data)["Message-ID"]
        for _, rcpt, data in script.received
        if rcpt.startswith("annoyed@")
    )
    arf = (
        corpus.ARF.replace(corpus.BOUNCE_TO, "To: fbl@kestrelbay.example\n")
        .replace(
            "To: annoyed@mailbox.example\n", f"To: annoyed@example.org\nMessage-ID: {message_id}\n"
        )
        .replace("<annoyed@mailbox.example>", "<annoyed@example.org>")
    )
    assert token not in arf
    deliver_returns(pub, {"complaint": arf.encode()})
    fetched = cli("bounces", "fetch", "--now", NOW.isoformat(), cwd=example, env=ENV)
    assert "digest held: issue 1: 1 complaints of 6 (16.67%, limit 0.30%)" in fetched.stdout

    script.received.clear()
    article(example, "after", (NOW + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M"))
    later = (NOW + timedelta(hours=2)).isoformat()
    held = cli("send", "weekly", "--now", later, cwd=example, env=ENV)
    assert held.returncode == 1
    assert "weekly: held: issue 1: 1 complaints of 6" in held.stdout
    assert "publisher bounces resume weekly" in held.stdout
    assert script.received == []  # nothing at all while held
    status = cli("status", cwd=example, env=ENV).stdout
    assert "held: issue 1: 1 complaints of 6 (16.67%, limit 0.30%)" in status

    resumed = cli("bounces", "resume", "weekly", cwd=example, env=ENV)
    assert resumed.returncode == 0 and "weekly: resumed" in resumed.stdout
    assert cli("send", "weekly", "--now", later, cwd=example, env=ENV).returncode == 0
    counts = Counter(rcpt for _, rcpt, _ in script.received)
    assert set(counts) == {f"{n}@example.org" for n in PEOPLE} - {"annoyed@example.org"}
    assert set(counts.values()) == {1}


def test_a_return_mailbox_that_is_not_a_maildir_is_one_clear_line(
    example: Path, cli: Callable[..., Ran]
) -> None:
    (example / "var" / "returns").mkdir(parents=True)
    done = cli("bounces", "fetch", cwd=example, env=ENV)
    assert done.returncode == 1
    assert done.stderr.strip().endswith("is not a Maildir (no new/ folder)")
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_digest_held_while_its_issue_goes_out_stops_at_the_next_claim(example: Path) -> None:
    from publisher.backends.memory import MemoryBackend
    from publisher.delivery import Sender, send_digest
    from publisher.store import returns as held_digests

    pub = load_config(example / "schedule.yaml")
    engine = store.connect(pub.database_url)
    with engine.begin() as db:
        for n in range(300):
            store.add_subscriber(db, f"r{n}@example.org", "", "weekly", 0.0)
    outbox = MemoryBackend({}, str(pub.root))

    def hold(count: int) -> None:  # another process's brake, after the first messages
        with engine.begin() as db:
            held_digests.hold(db, "weekly", "issue 1: 9 complaints of 300", NOW.timestamp())

    sender = Sender(engine, pub, [outbox], clock=lambda: NOW.timestamp(), progress=hold)
    [report] = send_digest(sender, pub.config.digests[0], NOW, KEY)
    # A connection sends at most record_every (100) messages before they are recorded.
    assert report.status == "paused" and 0 < report.sent <= 200, report.line()
    assert report.reason is not None and report.reason.startswith("held: issue 1: 9 complaints")
    sender.progress = None
    assert [r.status for r in send_digest(sender, pub.config.digests[0], NOW, KEY)] == ["held"]
    assert len(outbox.outbox) == report.sent
    with engine.begin() as db:
        assert held_digests.release(db, "weekly")
    [rest] = send_digest(sender, pub.config.digests[0], NOW, KEY)
    assert rest.status == "done"
    counts = Counter(envelope.recipient for envelope, _ in outbox.outbox)
    assert counts == {f"r{n}@example.org": 1 for n in range(300)}
    engine.dispose()


def test_a_processed_folder_that_cannot_be_made_is_one_line_and_loses_nothing(
    example: Path, server: tuple[int, Script], cli: Callable[..., Ran]
) -> None:
    port, script = server
    pub = publication(example, port)
    assert cli("send", "weekly", "--now", NOW.isoformat(), cwd=example, env=ENV).returncode == 0
    token = token_of(envelopes(script)["gone@example.org"])
    maildir = deliver_returns(pub, {
        "1.hard": returned(corpus.POSTFIX_DSN, token, "gone@example.org", "gone@example.org"),
    })  # fmt: skip
    (maildir / ".processed").write_text("in the way")  # a file where the folder goes
    failed = cli("bounces", "fetch", cwd=example, env=ENV)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert failed.stderr.startswith("returns: the return mailbox: ")
    assert len(failed.stderr.strip().splitlines()) == 1
    assert states(pub)["gone@example.org"] == ("active", 1, False)  # acted on, committed
    assert [p.name for p in (maildir / "new").iterdir()] == ["1.hard"]  # still there
    (maildir / ".processed").unlink()
    again = cli("bounces", "fetch", cwd=example, env=ENV)
    assert "acted on: nothing; 1 changed nothing" in again.stdout
    assert states(pub)["gone@example.org"] == ("active", 1, False)  # not counted twice
    assert list((maildir / "new").iterdir()) == []
