"""Keeps messages in a list: for tests, and a model of a minimal backend. It can be told to
fail for chosen recipients, so tests can exercise the delivery rules without a server."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from publisher.backends.base import Backend, DeliveryError, Envelope
from publisher.config.fields import StrictModel


class MemoryOptions(StrictModel):
    # {"address": "permanent" | "transient"}: fail every message to that address.
    fail: dict[str, Literal["permanent", "transient"]] = Field(default_factory=dict)


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
            permanent = failure == "permanent"
            raise DeliveryError(
                f"to {envelope.recipient}",
                permanent=permanent,
                code=550 if permanent else 451,
                reply="rejected by the memory backend" if permanent else "try again later",
            )
        self.outbox.append((envelope, message))
        return f"memory-{len(self.outbox)}"
