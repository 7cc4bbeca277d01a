"""The plain news text that newsrooms and scrapers hand over, read into structure.

The shape (there is no markup to lean on, only habits):

* the first non-empty line is the title;
* a dateline ``Updated on <date>`` / ``Published on <date>`` follows, and its date may be
  missing altogether (scrapers lose it);
* paragraphs are separated by blank lines;
* a short line that does not end like a sentence, standing between paragraphs, is a
  subheading (a question mark is fine: "Why does it matter?" is a heading);
* an all-lowercase line with no punctuation is what is left of an image caption or alt text
  (``mayor on the harbour plan``) and is dropped, as are trailers such as ``Leave a Comment``,
  ``Share this`` and ``Related: ...``;
* the text itself (curly quotes, non-breaking spaces, any script) is kept exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

DATELINE = re.compile(r"(?i)^(updated|published|posted)(?:\s+on)?\b[\s:,]*(?P<date>.*)$")

# Lines scrapers leave at the end (or in the middle) of an article. Matched on a whole
# paragraph, case-insensitively.
_TRAILERS = re.compile(
    r"(?i)^(?:leave an? (?:comment|reply)|share this(?: (?:article|story|post|page))?:?"
    r"|share on [\w ]{1,20}|click to share.*|tweet this|print this(?: article)?"
    r"|(?:\d+ )?comments?|related(?: (?:articles|stories|posts|reading))?:.*"
    r"|read more:.*|also read:.*|advertisement|sponsored content)$"
)

# What a sentence (as opposed to a heading) ends with; closing quotes and brackets after it
# do not change that: `... he said.”` is a sentence.
_SENTENCE_END = re.compile(r"[.!,;:…][\"'”’»)\]]*$")
_HEADING_MAX_CHARS = 120
_HEADING_MAX_WORDS = 16


@dataclass(frozen=True, slots=True)
class Block:
    kind: Literal["p", "h"]
    text: str
    line: int


@dataclass
class NewsText:
    title: str
    title_line: int
    # (kind, date text or "", line) of each dateline found right after the title
    datelines: list[tuple[str, str, int]] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    dropped: list[tuple[int, str]] = field(default_factory=list)


def parse_news_text(text: str, first_line: int = 1) -> NewsText | None:
    """Split news text into title, datelines and blocks. ``None`` when there is no title."""
    paragraphs = _paragraphs(text, first_line)
    if not paragraphs:
        return None
    (title_line, title), rest = paragraphs[0], paragraphs[1:]
    news = NewsText(title=title, title_line=title_line)

    # Datelines come first, before any body paragraph.
    while rest:
        line, para = rest[0]
        match = DATELINE.match(para)
        if not match or len(para) > 100 or "\n" in para:
            break
        news.datelines.append((match.group(1).lower(), match.group("date").strip(), line))
        rest = rest[1:]

    kept: list[tuple[int, str]] = []
    for line, para in rest:
        if _is_trailer(para) or _is_caption(para):
            news.dropped.append((line, para))
        else:
            kept.append((line, para))

    for index, (line, para) in enumerate(kept):
        between = 0 < index < len(kept) - 1
        kind: Literal["p", "h"] = "h" if between and _looks_like_heading(para) else "p"
        news.blocks.append(Block(kind, para.replace("\n", " "), line))
    return news


def _paragraphs(text: str, first_line: int) -> list[tuple[int, str]]:
    """Blank-line separated paragraphs with the line each starts on; inner lines joined."""
    out: list[tuple[int, str]] = []
    current: list[str] = []
    start = first_line
    for number, raw in enumerate(text.split("\n"), start=first_line):
        line = raw.strip(" \t\r\ufeff")
        if line:
            if not current:
                start = number
            current.append(line)
        elif current:
            out.append((start, "\n".join(current)))
            current = []
    if current:
        out.append((start, "\n".join(current)))
    return out


def _is_trailer(para: str) -> bool:
    return "\n" not in para and _TRAILERS.match(para) is not None


def _is_caption(para: str) -> bool:
    # "mayor on the harbour plan", "chart of rainfall by month in UK": lower-case words
    # (short all-capital acronyms allowed), starting lower-case, no sentence punctuation.
    if "\n" in para or len(para) > 200 or not para[0].islower():
        return False
    if re.search(r"[.!?:;,\"“”]", para):
        return False
    words = para.split()
    return len(words) >= 2 and all(
        w.islower() or (w.isupper() and len(w) <= 5) or not any(c.isalpha() for c in w)
        for w in words
    )


def _looks_like_heading(para: str) -> bool:
    if "\n" in para or len(para) > _HEADING_MAX_CHARS:
        return False
    if len(para.split()) > _HEADING_MAX_WORDS:
        return False
    return _SENTENCE_END.search(para) is None
