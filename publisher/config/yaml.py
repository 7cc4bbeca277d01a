"""Read YAML as text, remember where every value stood, and let the schema decide types.

PyYAML resolves plain scalars with YAML 1.1 rules: ``9:30`` becomes 570, ``no`` becomes
False, ``012`` becomes 10 and a key ``on:`` becomes True. People almost never mean that.
So we stop at the *node* level (``yaml.compose``): every plain scalar stays the text the
operator typed, and the pydantic models say what type a field is. A field that wants a
bool reads ``no`` as false; a field that wants text reads ``no`` as "no"; an integer field
rejects ``012`` instead of guessing octal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from publisher.errors import ConfigError, Problem

try:  # the C parser is ~10x faster; it is present in every PyYAML wheel
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover - only on a PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]


class _Loader(_SafeLoader):
    """The safe loader, minus guessing types: every node keeps its kind's plain tag.
    Nothing is constructed from the tags (the schema decides types), and PyYAML's
    resolver, in Python even under the C parser, tried its patterns on every scalar."""

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode:
            return str(self.DEFAULT_SCALAR_TAG)
        if kind is yaml.SequenceNode:
            return str(self.DEFAULT_SEQUENCE_TAG)
        return str(self.DEFAULT_MAPPING_TAG)


Path = tuple[str | int, ...]

# An alias can point at a mapping that itself holds aliases ("billion laughs"); we expand
# aliases into plain values, so the expansion must be bounded.
MAX_NODES = 100_000

_NULLS = frozenset({"", "~", "null", "Null", "NULL"})


@dataclass
class Document:
    """A parsed YAML document: plain Python values plus the line of every path in it."""

    value: Any
    lines: dict[Path, int] = field(default_factory=dict)

    def line_of(self, path: Path) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        for cut in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:cut]))
            if line is not None:
                return line
        return None


def load_yaml(text: str, source: str, first_line: int = 1) -> Document:
    """Parse one YAML document. ``first_line`` is the file line of ``text``'s first line."""
    offset = first_line - 1
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 + offset if mark else None
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p) or "not valid YAML"
        raise ConfigError([Problem(source, line, "yaml", what)]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(source, None, "yaml", str(exc))]) from exc
    doc = Document(value=None)
    if node is None:
        return doc
    builder = _Builder(source, offset, doc)
    doc.value = builder.build(node, ())
    if builder.problems:
        raise ConfigError(builder.problems)
    return doc


class _Builder:
    def __init__(self, source: str, offset: int, doc: Document) -> None:
        self.source = source
        self.offset = offset
        self.doc = doc
        self.count = 0
        self.problems: list[Problem] = []

    def line(self, node: yaml.Node) -> int:
        return int(node.start_mark.line) + 1 + self.offset

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise ConfigError(
                [Problem(self.source, self.line(node), dotted(path), "document too large")]
            )
        self.doc.lines.setdefault(path, self.line(node))
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        if node.style is None and node.value in _NULLS:
            return None
        return str(node.value)

    def mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(
                    Problem(self.source, self.line(key_node), dotted(path), "keys must be text")
                )
                continue
            key = str(key_node.value)
            if key in out:
                self.problems.append(
                    Problem(
                        self.source,
                        self.line(key_node),
                        dotted((*path, key)),
                        f"duplicate key (first at line {self.doc.lines[(*path, key)]})",
                    )
                )
                continue
            self.doc.lines[(*path, key)] = self.line(key_node)
            out[key] = self.build(value_node, (*path, key))
        return out


def dotted(path: Path) -> str:
    """``('feeds', 'tags', 0)`` -> ``feeds.tags[0]``: the form error messages use."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text
