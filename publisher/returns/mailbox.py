"""The return mailbox: a Maildir folder or an IMAP mailbox, read message by message.

A message that was understood (and acted on) is moved to the ``processed`` folder, never
deleted; one that was not is left where it is, for a person (in a Maildir it goes from
``new/`` to ``cur/``, unread; on IMAP it is marked seen), so it is not read again at every
fetch. Crash-safe by order: the state changes are committed before the message moves, and
a message read again is recognised by its key (``store.returns``).
"""

from __future__ import annotations

import contextlib
import hashlib
import imaplib
import os
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from publisher.config.models import ImapMailbox
from publisher.errors import Problem, PublisherError

MAX_MESSAGE = 10 * 1024 * 1024  # larger than any bounce: a message past it is left alone
MAX_PER_FETCH = 5000  # the rest waits for the next fetch
IMAP_TIMEOUT = 30.0


class MailboxError(PublisherError, OSError):
    """The return mailbox cannot be read (missing, refused, a wrong password)."""


@dataclass(frozen=True)
class Returned:
    ref: str  # the file name, or the IMAP UID
    raw: bytes  # empty when the message is too large to read

    @property
    def key(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


class Mailbox(Protocol):
    def messages(self) -> Iterator[Returned]: ...

    def processed(self, message: Returned) -> None: ...

    def leave(self, message: Returned) -> None: ...

    def close(self) -> None: ...


class Maildir:
    """A Maildir folder; processed messages go to its Maildir++ subfolder ``.<name>``."""

    def __init__(self, folder: Path, processed: str) -> None:
        self.folder = folder
        self.target = folder / f".{processed.strip('.').replace('/', '.')}"
        if not folder.exists():  # nothing came back yet: an empty Maildir, ready for it
            try:
                for sub in ("new", "cur", "tmp"):
                    (folder / sub).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise MailboxError([_problem(f"cannot make {folder}: {exc.strerror}")]) from exc
        for sub in ("new", "cur", "tmp"):
            if not (folder / sub).is_dir():
                raise MailboxError([_problem(f"{folder} is not a Maildir (no {sub}/ folder)")])

    def messages(self) -> Iterator[Returned]:
        new = self.folder / "new"
        try:
            names = sorted(os.listdir(new))[:MAX_PER_FETCH]
        except OSError as exc:
            raise MailboxError([_problem(f"cannot read {new}: {exc.strerror}")]) from exc
        for name in names:
            if name.startswith("."):
                continue
            path = new / name
            try:
                if path.stat().st_size > MAX_MESSAGE:
                    yield Returned(name, b"")
                    continue
                raw = path.read_bytes()
            except FileNotFoundError:
                continue  # another reader took it
            yield Returned(name, raw)

    def processed(self, message: Returned) -> None:
        for sub in ("new", "cur", "tmp"):
            (self.target / sub).mkdir(parents=True, exist_ok=True)
        self._move(message, self.target / "cur" / _seen(message.ref))

    def leave(self, message: Returned) -> None:
        self._move(message, self.folder / "cur" / _unread(message.ref))

    def _move(self, message: Returned, to: Path) -> None:
        with contextlib.suppress(FileNotFoundError):  # another reader moved it first
            os.replace(self.folder / "new" / message.ref, to)

    def close(self) -> None:
        pass


def _seen(name: str) -> str:
    base, _, flags = name.partition(":2,")
    return f"{base}:2,{''.join(sorted(set(flags) | {'S'}))}"


def _unread(name: str) -> str:
    return name if ":2," in name else f"{name}:2,"


class Imap:
    """An IMAP mailbox (RFC 9051/3501): unseen messages of ``folder``, fetched without
    marking them; processed ones MOVEd (or copied and expunged) to the ``processed``
    folder, made if missing; the others marked seen."""

    def __init__(self, settings: ImapMailbox, password: str, processed: str) -> None:
        self.settings = settings
        self.target = processed
        port = settings.port or (993 if settings.tls == "implicit" else 143)
        try:
            if settings.tls == "implicit":
                self.conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    settings.host, port, ssl_context=ssl.create_default_context(),
                    timeout=IMAP_TIMEOUT,
                )  # fmt: skip
            else:
                self.conn = imaplib.IMAP4(settings.host, port, timeout=IMAP_TIMEOUT)
                if settings.tls == "starttls":
                    self.conn.starttls(ssl.create_default_context())
            self.conn.login(settings.user, password)
            kind, _ = self.conn.select(_quote(settings.folder))
            if kind != "OK":
                raise imaplib.IMAP4.error(f"no folder {settings.folder}")
            self.capabilities = {c.upper() for c in self.conn.capabilities}
        except (OSError, imaplib.IMAP4.error, ssl.SSLError) as exc:
            raise MailboxError([_problem(f"{settings.host}:{port}: {_why(exc)}")]) from exc
        self.deleted: list[str] = []  # copied to the folder, to be expunged here
        self.made = False

    def messages(self) -> Iterator[Returned]:
        found = self._ok(self.conn.uid("SEARCH", "UNSEEN"), "search")
        uids = [u.decode() for u in (found[0] if isinstance(found[0], bytes) else b"").split()]
        for uid in uids[:MAX_PER_FETCH]:
            head = self._ok(self.conn.uid("FETCH", uid, "(RFC822.SIZE)"), "fetch")
            size = re.search(rb"RFC822\.SIZE (\d+)", head[0] if isinstance(head[0], bytes) else b"")
            if size is not None and int(size.group(1)) > MAX_MESSAGE:
                yield Returned(uid, b"")
                continue
            data = self._ok(self.conn.uid("FETCH", uid, "(BODY.PEEK[])"), "fetch")
            raw = next((part[1] for part in data if isinstance(part, tuple)), None)
            if raw is not None:
                yield Returned(uid, raw)

    def processed(self, message: Returned) -> None:
        if not self.made:
            self.conn.create(_quote(self.target))  # "already exists" is fine
            self.made = True
        if "MOVE" in self.capabilities:
            self._ok(self.conn.uid("MOVE", message.ref, _quote(self.target)), "move")
            return
        self._ok(self.conn.uid("COPY", message.ref, _quote(self.target)), "copy")
        self._ok(self.conn.uid("STORE", message.ref, "+FLAGS.SILENT", r"(\Deleted)"), "store")
        self.deleted.append(message.ref)

    def leave(self, message: Returned) -> None:
        self._ok(self.conn.uid("STORE", message.ref, "+FLAGS.SILENT", r"(\Seen)"), "store")

    def close(self) -> None:
        try:
            if self.deleted:
                # Only what this reader copied: UID EXPUNGE where the server has it.
                if "UIDPLUS" in self.capabilities:
                    self.conn.uid("EXPUNGE", ",".join(self.deleted))
                else:
                    self.conn.expunge()
            self.conn.logout()
        except (OSError, imaplib.IMAP4.error):
            pass  # the work is committed; the connection's end does not matter

    def _ok(self, answer: tuple[str, list[object]], what: str) -> list[bytes | tuple[bytes, bytes]]:
        kind, data = answer
        if kind != "OK":
            shown = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
            raise MailboxError([_problem(f"{self.settings.host}: {what} refused: {shown[:200]}")])
        return [d for d in data if isinstance(d, bytes | tuple)]


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _why(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, imaplib.IMAP4.error) and text.startswith("b'"):
        text = text[2:-1]
    return " ".join(text.split())[:200] or type(exc).__name__


def _problem(what: str) -> Problem:
    return Problem("", None, "returns", what)
