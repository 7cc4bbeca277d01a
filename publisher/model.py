"""The values that flow through the pipeline. Frozen: once read, an article never changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Image:
    """A lead image: shown in digests, and an enclosure in feeds."""

    url: str
    type: str
    length: int
    alt: str


@dataclass(frozen=True, slots=True)
class Article:
    """One published piece, whatever file format it came from.

    ``body_html`` and ``summary_html`` are sanitized HTML fragments with absolute URLs;
    every text field is free of characters XML 1.0 forbids.
    """

    slug: str
    title: str
    date: datetime
    updated: datetime | None
    author: str | None
    tags: tuple[str, ...]
    summary_html: str
    body_html: str
    image: Image | None
    draft: bool
    link: str
    source: str
    # Files of the publication it references (publication-relative paths): the site
    # publishes them beside its pages, at the same path.
    files: tuple[str, ...] = ()
    # Other articles it links to: (publication-relative source path, the permalink used).
    linked: tuple[tuple[str, str], ...] = ()

    @property
    def modified(self) -> datetime:
        return self.updated or self.date


@dataclass(frozen=True, slots=True)
class UpstreamEntry:
    """One entry of an upstream feed as the feed gave it: its HTML not yet sanitized (that
    happens where every article's does), its relative links resolved against ``base``."""

    identity: str  # SHA-256 (hex) of its id, else of its link, else of its title and link
    sameness: str  # SHA-256 (hex) of its link and title
    title: str
    link: str
    published: str | None  # ISO 8601 in UTC; None: the feed gives no date
    updated: str | None
    author: str | None
    tags: tuple[str, ...]
    summary: str  # HTML
    content: str  # HTML; empty when the feed carries a summary only
    base: str
