"""Find a backend class by name: an entry point of ``publisher.backends``, or
``package.module:Class``. Loaded lazily, and checked to be a Backend."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from publisher.backends.base import Backend
from publisher.config import Publication
from publisher.config.fields import validate_value
from publisher.errors import ConfigError, Problem

GROUP = "publisher.backends"


def installed() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


def backend_class(name: str) -> type[Backend]:
    if ":" in name:
        module_name, _, attribute = name.partition(":")
        try:
            found = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise LookupError(f"backend '{name}' cannot be imported: {exc}") from None
    else:
        matches = [ep for ep in entry_points(group=GROUP) if ep.name == name]
        if not matches:
            raise LookupError(
                f"no backend named '{name}'; installed: {', '.join(installed()) or 'none'}"
                " (or give package.module:Class)"
            )
        found = matches[0].load()
    if not (isinstance(found, type) and issubclass(found, Backend)):
        raise LookupError(f"backend '{name}' is not a publisher.backends.Backend subclass")
    return found


def load_backend(name: str, options: Mapping[str, Any], root: str) -> Backend:
    return backend_class(name)(options, root)


def checked_backend(pub: Publication) -> type[Backend]:
    """The class of the configured backend, its options validated: every mistake is a
    ``schedule.yaml:LINE: backend.key: what`` error, found by `publisher check` and before
    anything is sent, never a traceback in the middle of a run."""
    settings = pub.config.backend
    try:
        found = backend_class(settings.type)
    except LookupError as exc:
        line = pub.line_of("backend", "type") or pub.line_of("backend")
        raise ConfigError([Problem(pub.path.name, line, "backend.type", str(exc))]) from None
    if found.Options is not None:

        def line_of(loc: tuple[Any, ...]) -> int | None:
            return pub.line_of("backend", *loc[:1]) or pub.line_of("backend")

        validate_value(found.Options, settings.options, pub.path.name, line_of, "backend")
    return found


def backend_pool(pub: Publication) -> list[Backend]:
    """The backends one run sends through: as many as the backend's ``connections`` (one
    per sending thread; each holds its own connection)."""
    found = checked_backend(pub)
    options, root = pub.config.backend.options, str(pub.root)
    first = found(options, root)
    count = max(1, int(getattr(first, "connections", 1)))
    return [first, *(found(options, root) for _ in range(count - 1))]
