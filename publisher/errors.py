"""One exception root, and one way of saying where a problem is.

Every message the operator sees has the shape ``path:line: where: what`` so that editors and
terminals can jump to it; parts that are unknown are left out rather than invented.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong (or worth a warning) at one place of one input file."""

    path: str
    line: int | None
    where: str
    what: str

    def __str__(self) -> str:
        place = self.path if self.line is None else f"{self.path}:{self.line}"
        parts = [part for part in (place, self.where, self.what) if part]
        return ": ".join(parts)


class PublisherError(Exception):
    """Root of every error this package raises on purpose."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ConfigError(PublisherError, ValueError):
    """schedule.yaml is not valid; ``problems`` lists every mistake found, not just the first."""


class ContentError(PublisherError, ValueError):
    """An article cannot be published as it is; the build skips it and goes on."""


class StateError(PublisherError, OSError):
    """The state database cannot be opened or used (unreachable, locked, full, a bad URL)."""
