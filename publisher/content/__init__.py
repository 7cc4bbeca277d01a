"""Content: article files in, frozen ``Article`` values out."""

from publisher.content.readers import (
    READER_VERSION,
    SUFFIXES,
    Parsed,
    decode_article,
    parse_article,
    read_article,
    slugify,
)

__all__ = [
    "READER_VERSION",
    "SUFFIXES",
    "Parsed",
    "decode_article",
    "parse_article",
    "read_article",
    "slugify",
]
