"""Keeps messages in a list: for tests, and a model of a minimal backend. It can be told to
fail for chosen recipients, so tests can exercise the delivery rules without a server."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from publisher.backends.base import Backend, DeliveryError, Envelope, Stage
from publisher.config.fields import StrictModel

Failure = Literal["permanent", "transient", "sender", "content", "unreachable", "lost"]

# What each kind of failure looks like from a server: (stage, code, reply, permanent,
# connection lost).
FAILURES: dict[str, tuple[Stage, int | None, str, bool, bool]] = {
    "permanent": ("rcpt", 550, "5.1.1 no such user", True, False),
    "transient": ("rcpt", 451, "4.7.1 greylisted, try again later", False, False),
    "sender": ("mail", 530, "5.7.0 authentication required", True, False),
    "content": ("dot", 554, "5.6.0 message content refused", True, False),
    "unreachable": ("connect", None, "connection refused", False, True),
    "lost": ("dot", None, "connection reset", False, True),
}


class MemoryOptions(StrictModel):
    # {"address": kind}: fail every message to that address the way FAILURES says.
    fail: dict[str, Failure] = Field(default_factory=dict)


class MemoryBackend(Backend):
    Options = MemoryOptions

    def __init__(self, options: Mapping[str, Any], root: str) -> None:
        super().__init__(options, root)
        self.outbox: list[tuple[Envelope, bytes]] = []
        self.failures: dict[str, str] = dict(MemoryOptions.model_validate(options).fail)
        self.opened = 0

    def open(self) -> None:
        self.opened += 1

    def send(self, message: bytes, envelope: Envelope) -> str:
        failure = self.failures.get(envelope.recipient)
        if failure is not None:
            stage, code, reply, permanent, lost = FAILURES[failure]
            raise DeliveryError(
                f"to {envelope.recipient}", permanent=permanent, code=code, reply=reply,
                connection=lost, stage=stage,
            )  # fmt: skip
        self.outbox.append((envelope, message))
        return f"memory-{len(self.outbox)}"
