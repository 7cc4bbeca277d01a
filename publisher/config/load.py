"""schedule.yaml -> a typed, validated, frozen ``Config``, with the folder it belongs to.

Validation happens once, at start, and reports every mistake with its line. Paths inside the
file are relative to the file's own folder, so a publication folder can be moved or cloned.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any
from zoneinfo import ZoneInfo

from publisher.config.fields import validate_document
from publisher.config.models import Config, Digest, Schedule
from publisher.config.yaml import load_yaml
from publisher.errors import ConfigError, Problem

DEFAULT_CONFIG = "schedule.yaml"


@dataclass(frozen=True)
class Publication:
    """A validated config together with the folder it belongs to."""

    path: Path
    config: Config
    # Line of every key of schedule.yaml, for errors found after validation.
    lines: Mapping[tuple[str | int, ...], int] = field(default_factory=dict, compare=False)

    def line_of(self, *path: str | int) -> int | None:
        return self.lines.get(path)

    def digest(self, name: str) -> Digest:
        for digest in self.config.digests:
            if digest.name == name:
                return digest
        known = ", ".join(d.name for d in self.config.digests) or "none"
        what = f"no digest named '{name}' (digests: {known})"
        raise ConfigError([Problem(self.path.name, self.line_of("digests"), "digests", what)])

    def zone_of(self, schedule: Schedule | None) -> ZoneInfo:
        """The time zone a schedule's times are in: its own, or the site's."""
        if schedule is not None and schedule.timezone:
            return ZoneInfo(schedule.timezone)
        return self.config.site.zone

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def articles_dir(self) -> Path:
        return self.root / self.config.content.folder

    @property
    def feeds_dir(self) -> Path:
        return self.root / self.config.feeds.folder

    @property
    def site_dir(self) -> Path:
        return self.root / self.config.website.folder

    @property
    def state_dir(self) -> Path:
        return self.root / self.config.state.folder

    @property
    def database_url(self) -> str:
        url = self.config.state.database
        return url or f"sqlite:///{self.state_dir / 'publisher.db'}"

    @property
    def templates_dir(self) -> Path:
        return self.root / self.config.templates

    @property
    def web_templates_dir(self) -> Path:
        return self.root / self.config.web.templates

    @cached_property
    def feeds_url(self) -> str:
        url = self.config.feeds.url
        if url is None:
            url = self.config.site.base_url + self.config.feeds.folder.strip("/") + "/"
        return url if url.endswith("/") else url + "/"


def config_path(given: str | None) -> Path:
    return Path(given or os.environ.get("PUBLISHER_CONFIG") or DEFAULT_CONFIG)


def load_config(path: Path) -> Publication:
    """Read and validate schedule.yaml; raise ``ConfigError`` listing every problem."""
    shown = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([Problem(shown, None, "", f"cannot read: {exc.strerror}")]) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError([Problem(shown, line, "", "not UTF-8 text")]) from exc
    doc = load_yaml(text, shown)
    if doc.value is None:
        raise ConfigError([Problem(shown, 1, "", "is empty; it needs at least a site: section")])
    if not isinstance(doc.value, dict):
        raise ConfigError([Problem(shown, 1, "", "must be a mapping of sections (site:, feeds:)")])
    config = validate_document(Config, doc, shown)
    for section, names in (
        ("digests", [digest.name for digest in config.digests]),
        ("sources", [source.name for source in config.sources]),
    ):
        seen: dict[str, int] = {}
        for index, name in enumerate(names):
            if name in seen:
                where = f"{section}[{index}].name"
                at = doc.line_of((section, index, "name"))
                what = f"'{name}' is already the name of {section}[{seen[name]}]"
                raise ConfigError([Problem(shown, at, where, what)])
            seen[name] = index
    if config.website.enabled:
        _site_folder_apart(config, doc, shown)
    if config.returns is not None and config.delivery.bounce_address is not None:
        # Two envelope senders: returned mail would go where nothing reads it.
        at = doc.line_of(("delivery", "bounce_address"))
        what = (
            "give the envelope sender once: returns.address (which reads what comes "
            "back) replaces it"
        )
        raise ConfigError([Problem(shown, at, "delivery.bounce_address", what)])
    return Publication(path=path.resolve(), config=config, lines=dict(doc.lines))


def _site_folder_apart(config: Config, doc: Any, shown: str) -> None:
    """The site folder is the build's to fill and prune: it must be neither the
    publication's folder nor hold, or lie inside, one of its other folders (pages written
    into the articles would be read back as articles; the feeds or the state would be
    pruned as stale pages)."""
    site = PurePosixPath(os.path.normpath(config.website.folder))
    others = {
        "content.folder": config.content.folder, "feeds.folder": config.feeds.folder,
        "state.folder": config.state.folder, "templates": config.templates,
        "web.templates": config.web.templates,
    }  # fmt: skip
    for where, folder in others.items():
        other = PurePosixPath(os.path.normpath(folder))
        if (
            site == PurePosixPath(".")
            or site == other
            or site in other.parents
            or (other in site.parents)
        ):
            line = doc.line_of(("website", "folder")) or doc.line_of(("website",))
            what = (f"'{config.website.folder}' must be a folder of its own, apart from "
                    f"{where} '{folder}'")  # fmt: skip
            raise ConfigError([Problem(shown, line, "website.folder", what)])
