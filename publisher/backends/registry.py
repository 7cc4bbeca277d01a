"""Find a backend class by name: an entry point of ``publisher.backends``, or
``package.module:Class``. Loaded lazily, and checked to be a Backend."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from publisher.backends.base import Backend

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
