"""Content: article files in, frozen ``Article`` values out.

This module is kept light (the readers and their parsers load only when a file is read),
so that a rebuild with nothing new to read starts fast.
"""

from __future__ import annotations

import html
import re
import unicodedata
from functools import lru_cache

SUFFIXES = (".md", ".markdown", ".html", ".htm", ".txt")

# Bump when a change in the readers alters what they produce from the same bytes: the
# incremental build cache keys on it.
READER_VERSION = "6"


@lru_cache(maxsize=4096)  # the same few dozen tags, for each of 10,000 articles a build
def slugify(text: str) -> str:
    """``"Harbour Café, Part 2"`` -> ``"harbour-cafe-part-2"``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


_TAG = re.compile(r"""<(?:[^>"']|"[^"]*"|'[^']*')*>""")


def plain_text(fragment: str) -> str:
    """The text of a sanitized HTML fragment, whitespace folded.

    Sanitizer output has well-formed tags and quoted attribute values, so dropping the tags
    and unescaping entities leaves exactly the text.
    """
    return " ".join(html.unescape(_TAG.sub("", fragment)).split())
