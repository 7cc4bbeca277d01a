"""One read of the return mailbox: each new message classified, acted on, then moved.

What `publisher bounces fetch` and the scheduler's returns job do. The state changes of a
message are committed before the message is moved, so a crash in between reads it again
next time and changes nothing twice (its key is recorded).
"""

from __future__ import annotations

import imaplib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from publisher.config import Publication
from publisher.errors import ConfigError, Problem
from publisher.returns.act import Report, act
from publisher.returns.classify import classify
from publisher.returns.mailbox import Imap, Mailbox, MailboxError, Maildir
from publisher.tokens import Signer


@dataclass
class Fetched:
    """What a read of the mailbox did."""

    read: int = 0
    acted: Counter[str] = field(default_factory=Counter)  # per kind: state changed
    unchanged: int = 0  # understood, nothing to change (auto-replies, seen before, not ours)
    left: int = 0  # not understood: left in the mailbox for a person
    lines: list[str] = field(default_factory=list)  # what each acted-on message did

    def line(self) -> str:
        acted = ", ".join(f"{n} {kind}" for kind, n in sorted(self.acted.items())) or "nothing"
        return (f"returns: {self.read} message(s) read; acted on: {acted}; "
                f"{self.unchanged} changed nothing; {self.left} left for a person")  # fmt: skip


def open_mailbox(pub: Publication) -> Mailbox | None:
    """The configured return mailbox; None when schedule.yaml names none."""
    settings = pub.config.returns
    if settings is None:
        return None
    if settings.maildir is not None:
        return Maildir(Path(pub.root, settings.maildir), settings.processed)
    if settings.imap is not None:
        variable = settings.imap.password_env
        password = os.environ.get(variable)
        if not password:
            line = pub.line_of("returns", "imap", "password_env")
            what = f"set the environment variable {variable} to the mailbox's password"
            raise ConfigError([Problem(pub.path.name, line, "returns.imap.password_env", what)])
        return Imap(settings.imap, password, settings.processed)
    return None


def fetch_returns(engine: Engine, pub: Publication, signer: Signer, now: float) -> Fetched | None:
    """Read every new message of the return mailbox once; None without a mailbox."""
    settings = pub.config.returns
    mailbox = open_mailbox(pub)
    if settings is None or mailbox is None:
        return None
    prefix = settings.address.rsplit("@", 1)[0]
    unsubscribe = pub.config.email.unsubscribe_mailto
    fetched = Fetched()
    try:
        _read(engine, pub, signer, now, mailbox, prefix, unsubscribe, fetched)
    except (OSError, imaplib.IMAP4.error) as exc:
        # A folder that cannot be written, a connection lost half-way: what was acted on
        # is committed, and the message it stopped at is read again next time.
        what = f"the return mailbox: {getattr(exc, 'strerror', None) or exc}"
        raise MailboxError([Problem("", None, "returns", " ".join(what.split())[:300])]) from exc
    finally:
        mailbox.close()
    return fetched


def _read(
    engine: Engine,
    pub: Publication,
    signer: Signer,
    now: float,
    mailbox: Mailbox,
    prefix: str,
    unsubscribe: str | None,
    fetched: Fetched,
) -> None:
    """Each new message: classified, acted on (committed), then moved."""
    for message in mailbox.messages():
        fetched.read += 1
        decision = classify(message.raw, prefix, unsubscribe) if message.raw else None
        if decision is None or decision.kind == "unknown":
            mailbox.leave(message)
            fetched.left += 1
            continue
        try:
            with engine.begin() as db:
                outcome = act(db, pub, signer, Report(message.key, "mailbox", decision), now)
        except IntegrityError:
            outcome = None  # another reader acted on it at the same moment
        if outcome is not None and outcome.acted:
            fetched.acted[outcome.kind] += 1
            fetched.lines.append(outcome.what)
        else:
            fetched.unchanged += 1
        mailbox.processed(message)
