"""The import contract: every station imports only stations below it (docs/architecture.md).

Read from the code's own import statements (those inside functions too), so a new arrow
against the direction, or a module no tier names, fails here before it lands.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "publisher"

# Lower tiers know nothing of higher ones. A station's place is its top-level module or
# package below publisher/.
TIERS: dict[str, int] = {
    "errors": 0, "model": 0, "characters": 0,
    "headers": 1, "files": 1, "localtime": 1,
    "config": 2,
    "tokens": 3, "backends": 3, "store": 3, "content": 3,
    "feeds": 4, "digest": 4, "subscribers": 4, "sources": 4, "returns": 4,
    "site": 5,
    "build": 6,
    "delivery": 7,
    "confirm": 8, "workers": 8,
    "scheduler": 9,
    "overview": 10,
    "web": 11,
    "cli": 12,
    "__main__": 13,
}  # fmt: skip
# Arrows that point up on purpose, each with its reason.
EXCEPTIONS = {
    # schedule.yaml's cron fields are validated with the scheduler's own trigger maths,
    # so that what `check` accepts is exactly what `run` runs (a lazy import, at validation).
    ("config", "scheduler"),
}


def station(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def arrows() -> set[tuple[str, str, str]]:
    """(importing station, imported station, file) for every import between stations."""
    found = set()
    for file in PACKAGE.rglob("*.py"):
        relative = file.relative_to(PACKAGE.parent).with_suffix("")
        here = station(".".join(relative.parts))
        for node in ast.walk(ast.parse(file.read_text("utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                if not name.startswith("publisher."):
                    continue
                there = station(name)
                if there != here and there in TIERS:
                    found.add((here, there, str(relative)))
    return found


def test_every_station_has_a_tier() -> None:
    stations = {
        path.stem if path.is_file() else path.name
        for path in PACKAGE.iterdir()
        if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").exists()
    }
    assert stations - set(TIERS) == set(), "place the new station in TIERS"


def test_imports_point_down() -> None:
    found = arrows()
    assert found, "no import read: the test would pass on anything"
    wrong = sorted(
        f"{file}: {here} (tier {TIERS[here]}) imports {there} (tier {TIERS[there]})"
        for here, there, file in found
        if TIERS[there] >= TIERS[here] and (here, there) not in EXCEPTIONS
    )
    assert wrong == []
