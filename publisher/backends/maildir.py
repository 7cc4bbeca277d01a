"""One file per message in a Maildir: the example publication's outbox, no server needed.

A Maildir is written safely by design: the file is written in ``tmp/`` and renamed into
``new/``, so a reader never sees half a message, and a crash leaves at most a stray file in
``tmp/``. The file name is derived from the Message-ID, so a message sent twice (after a
crash) lands on the same name instead of becoming a second copy.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from publisher.backends.base import Backend, DeliveryError, Envelope
from publisher.config.fields import StrictModel, Text
from publisher.files import private_folder


class MaildirOptions(StrictModel):
    path: Text = Field(default="outbox", min_length=1)  # relative to schedule.yaml


class MaildirBackend(Backend):
    Options = MaildirOptions

    def __init__(self, options: Mapping[str, Any], root: str) -> None:
        super().__init__(options, root)
        self.folder = Path(root, MaildirOptions.model_validate(options).path)

    def open(self) -> None:
        # Private, like any mailbox: every message names its recipient and holds their
        # unsubscribe link.
        private_folder(self.folder)
        for sub in ("tmp", "new", "cur"):
            private_folder(self.folder / sub)

    def send(self, message: bytes, envelope: Envelope) -> str:
        name = hashlib.sha256(f"{envelope.message_id}\0{envelope.recipient}".encode()).hexdigest()[
            :32
        ]
        temp = self.folder / "tmp" / f"{name}.{os.getpid()}"
        final = self.folder / "new" / f"{name}.publisher"
        headers = f"Delivered-To: {envelope.recipient}\r\nReturn-Path: <{envelope.sender}>\r\n"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(headers.encode("ascii") + message)
                handle.flush()
                os.fsync(handle.fileno())  # a message reported sent must survive a power cut
            temp.replace(final)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise DeliveryError(
                f"cannot write {final}", permanent=False, reply=str(exc), stage="local"
            ) from exc
        return final.name
