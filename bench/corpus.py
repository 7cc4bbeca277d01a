"""A deterministic corpus of Markdown articles (~820 words each), the same for every tool.

Words are made up from syllables so that no one's text is copied and every run, on every
machine, produces the same files for the same seed.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

SYLLABLES = "ka lo mi ne ta ru sa ve pi do ba lu ke mo ri sen tal var dun fel hor".split()
TAGS = [f"topic{n}" for n in range(40)]
START = datetime(2020, 1, 1, 8, 0, tzinfo=UTC)


def _words(rng: random.Random, vocabulary: list[str], count: int) -> list[str]:
    return [rng.choice(vocabulary) for _ in range(count)]


def _vocabulary(rng: random.Random) -> list[str]:
    return ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(3000)]


def article_text(rng: random.Random, vocabulary: list[str], index: int) -> tuple[str, str]:
    """Front matter and a body of ~820 words: paragraphs, a heading, a list, links."""
    title = " ".join(_words(rng, vocabulary, rng.randint(4, 9))).capitalize()
    date = START + timedelta(hours=index * 5, minutes=rng.randint(0, 59))
    tags = rng.sample(TAGS, 2)
    parts: list[str] = []
    words = 0
    while words < 820:
        kind = rng.random()
        if kind < 0.08:
            parts.append("## " + " ".join(_words(rng, vocabulary, 4)).capitalize())
            words += 4
        elif kind < 0.16:
            items = ["- " + " ".join(_words(rng, vocabulary, 6)) for _ in range(4)]
            parts.append("\n".join(items))
            words += 24
        else:
            sentence_words = _words(rng, vocabulary, 60)
            sentence_words[5] = f"*{sentence_words[5]}*"
            sentence_words[12] = f"[{sentence_words[12]}](https://example.org/{index}/{words})"
            sentence_words[30] = f"**{sentence_words[30]}**"
            text = " ".join(sentence_words).capitalize() + "."
            parts.append(text)
            words += 60
    front = (
        f"---\ntitle: {title}\ndate: {date.strftime('%Y-%m-%dT%H:%M:%SZ')}\n"
        f"tags: [{', '.join(tags)}]\n---\n\n"
    )
    return f"article-{index:05}", front + "\n\n".join(parts) + "\n"


def write_corpus(folder: Path, count: int, seed: int = 20261128) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    vocabulary = _vocabulary(rng)
    for index in range(count):
        name, text = article_text(rng, vocabulary, index)
        (folder / f"{name}.md").write_text(text, "utf-8")
