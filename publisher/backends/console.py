"""Writes every message to standard output: to see what would be sent."""

from __future__ import annotations

import sys

from publisher.backends.base import Backend, Envelope
from publisher.config.fields import StrictModel


class ConsoleOptions(StrictModel):
    """No options."""


class ConsoleBackend(Backend):
    Options = ConsoleOptions

    def send(self, message: bytes, envelope: Envelope) -> str:
        out = sys.stdout.buffer
        out.write(f"--- to {envelope.recipient} from {envelope.sender}\n".encode())
        out.write(message.replace(b"\r\n", b"\n"))
        out.write(b"\n")
        out.flush()
        return f"console-{envelope.message_id}"
