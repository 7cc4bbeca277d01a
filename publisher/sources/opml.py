"""OPML in: the feeds of a reader's export added to schedule.yaml's ``sources:``. The file
stays the operator's: the new entries are appended to its ``sources:`` list as text (its
comments and layout kept), and the result must load before it replaces the old file."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from publisher.config import Publication, load_config
from publisher.content import slugify
from publisher.errors import ConfigError, Problem
from publisher.files import write_atomic

MAX_FEEDS = 10_000  # outlines taken from one file
_TOP_SOURCES = re.compile(r"^sources:[ \t]*(#.*)?$")


@dataclass(frozen=True)
class Imported:
    added: list[tuple[str, str]]  # (name, url) now in schedule.yaml
    known: list[str]  # URLs schedule.yaml had already


def read_opml(path: Path, shown: str) -> list[tuple[str, str]]:
    """The (title, feed URL) of every outline with an ``xmlUrl``, folders included."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.parse(str(path), parser).getroot()
    except OSError as exc:
        raise ConfigError([Problem(shown, None, "opml", f"cannot read: {exc}")]) from None
    except etree.XMLSyntaxError as exc:
        line = exc.lineno or None
        raise ConfigError(
            [Problem(shown, line, "opml", f"not well-formed XML: {exc.msg}")]
        ) from None
    if root.tag != "opml":
        raise ConfigError(
            [Problem(shown, 1, "opml", f"the root element is <{root.tag}>, not <opml>")]
        )
    feeds: list[tuple[str, str]] = []
    for outline in root.iter("outline"):
        url = (outline.get("xmlUrl") or "").strip()
        if not url:
            continue  # a folder, or a plain link
        if not re.match(r"https?://", url):
            what = f"xmlUrl {url!r} is not an http(s) URL"
            line = outline.sourceline if isinstance(outline.sourceline, int) else None
            raise ConfigError([Problem(shown, line, "opml", what)])
        title = (outline.get("title") or outline.get("text") or "").strip()
        feeds.append((title, url))
        if len(feeds) >= MAX_FEEDS:
            break
    return feeds


def import_opml(pub: Publication, path: Path, shown: str) -> Imported:
    """Add the feeds of ``path`` that schedule.yaml does not have yet to its sources."""
    feeds = read_opml(path, shown)
    present = {source.url for source in pub.config.sources}
    names = {source.name for source in pub.config.sources}
    added: list[tuple[str, str]] = []
    known: list[str] = []
    for title, url in feeds:
        if url in present:
            known.append(url)
            continue
        present.add(url)
        base = (slugify(title) or slugify(re.sub(r"^https?://", "", url)) or "source")[:56]
        name, n = base, 1
        while name in names:  # bounded: one more than the names taken
            n += 1
            name = f"{base}-{n}"
        names.add(name)
        added.append((name, url))
    if added:
        text = pub.path.read_text("utf-8")
        updated = _appended(text, added, pub)
        _check(pub, updated)
        write_atomic(pub.path, updated.encode("utf-8"))
    return Imported(added, known)


def _appended(text: str, added: list[tuple[str, str]], pub: Publication) -> str:
    lines = text.splitlines(keepends=True)
    block = "".join(f"  - name: {name}\n    url: {_quoted(url)}\n" for name, url in added)
    start = next((i for i, line in enumerate(lines) if _TOP_SOURCES.match(line.rstrip("\n"))), None)
    if start is None:
        if pub.line_of("sources") is not None:
            what = "is not a list of entries that can be added to (write it as '- name: ...')"
            raise ConfigError([Problem(pub.path.name, pub.line_of("sources"), "sources", what)])
        tail = "" if not text or text.endswith("\n") else "\n"
        return text + tail + "sources:\n" + block
    end = start + 1
    last = start  # the block's last line that is not blank
    while end < len(lines):  # bounded: the file's lines
        line = lines[end]
        if line.strip() and not line[0].isspace() and not line.startswith("#"):
            break  # the next top-level section
        if line.strip() and not line.lstrip().startswith("#"):
            last = end
        end += 1
    if not lines[last].endswith("\n"):
        lines[last] += "\n"
    return "".join(lines[: last + 1]) + block + "".join(lines[last + 1 :])


def _quoted(url: str) -> str:
    return '"' + url.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check(pub: Publication, text: str) -> None:
    """The new schedule.yaml must load as the old one did, with the sources added."""
    trial = pub.path.with_name(f".{pub.path.name}.import")
    try:
        trial.write_text(text, "utf-8")
        load_config(trial)
    finally:
        trial.unlink(missing_ok=True)
