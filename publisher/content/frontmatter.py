"""YAML front matter between ``---`` lines at the top of an article file."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field

from publisher.characters import strip_forbidden
from publisher.config.fields import Bool, HttpUrl, StrictModel, Text, text_value, validate_document
from publisher.config.yaml import Document, load_yaml
from publisher.errors import ConfigError, ContentError, Problem

_FENCE = re.compile(r"^---[ \t]*$")
_CLOSE = re.compile(r"^(?:---|\.\.\.)[ \t]*$")


def _tags(value: Any) -> Any:
    # `tags: harbour, weather` is as common as a YAML list; accept both.
    if isinstance(value, str):
        return [t for t in (part.strip() for part in value.split(",")) if t]
    return value


class ImageMeta(StrictModel):
    src: Text
    alt: Text = ""
    type: Text | None = None


def _image(value: Any) -> Any:
    return {"src": value} if isinstance(value, str) else value


class FrontMatter(StrictModel):
    # Unknown keys are kept (and warned about) rather than rejected: an article must not
    # vanish from the feed because of a key some other tool put there.
    model_config = ConfigDict(extra="allow", frozen=True, str_strip_whitespace=True)

    title: Text | None = None
    date: Annotated[str, BeforeValidator(text_value)] | None = None
    updated: Annotated[str, BeforeValidator(text_value)] | None = None
    author: Text | None = None
    tags: Annotated[list[Text], BeforeValidator(_tags)] = Field(default_factory=list)
    summary: Text | None = None
    slug: Text | None = None
    image: Annotated[ImageMeta, BeforeValidator(_image)] | None = None
    draft: Bool = False
    link: HttpUrl | None = None


@dataclass(frozen=True)
class Split:
    meta: FrontMatter
    doc: Document
    body: str
    body_line: int  # file line on which the body starts
    removed: int = 0  # forbidden characters removed from front-matter values
    removed_line: int | None = None


def split_front_matter(text: str, source: str) -> Split:
    """Separate front matter from the body; a file without front matter has empty meta."""
    lines = text.split("\n")
    if not lines or not _FENCE.match(lines[0]):
        return Split(FrontMatter(), Document(None), text, 1)
    for index in range(1, len(lines)):
        if _CLOSE.match(lines[index]):
            break
    else:
        raise ContentError([Problem(source, 1, "front matter", "no closing '---' line")])
    yaml_text = "\n".join(lines[1:index])
    try:
        doc = load_yaml(yaml_text, source, first_line=2)
        if doc.value is not None and not isinstance(doc.value, dict):
            raise ContentError(
                [Problem(source, 2, "front matter", "must be a mapping such as 'title: ...'")]
            )
        removed: list[int] = []
        doc.value = _clean(doc.value, (), doc, removed)
        meta = validate_document(FrontMatter, doc, source)
    except ConfigError as exc:
        raise ContentError(exc.problems) from None
    body = "\n".join(lines[index + 1 :])
    return Split(meta, doc, body, index + 2, len(removed), min(removed, default=None))


def _clean(value: Any, path: tuple[str | int, ...], doc: Document, removed: list[int]) -> Any:
    """Strip XML-forbidden characters from every string, noting the line of each removal."""
    if isinstance(value, str):
        cleaned, count, _ = strip_forbidden(value)
        removed.extend([doc.line_of(path) or 1] * count)
        return cleaned
    if isinstance(value, list):
        return [_clean(v, (*path, i), doc, removed) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _clean(v, (*path, k), doc, removed) for k, v in value.items()}
    return value
