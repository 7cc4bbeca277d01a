"""Benchmark: one digest issue rendered once, then personalized per recipient.

    python3 bench/digest.py [--articles 20] [--recipients 20000] [--rounds 5]

Measures, in one process on one core:
* compose: Jinja2 render + premailer inlining + MIME encoding of an issue of N articles
  (target <= 0.5 s), in its two shapes (recipients with a name, without). With the
  example's templates, which test the name, the shapes differ and each is inlined; with
  templates that only print the name, the second shape reuses the first's inlining: both
  are timed;
* choose: what the next issue takes, from the ledger, for a publication of 10,000
  articles whose digest has sent 500 issues of 20 (the reference in the same run: the
  same choice with nothing sent, a filter by date as the window rule was);
* personalize: finished messages per second for a list of distinct recipients, from the
  issue's pre-encoded bytes (target >= 20,000/s);
* the reference in the same run: building each personalized message with the standard
  library's EmailMessage and as_bytes(), as a naive sender would.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import write_corpus

from publisher.build import build, load_articles
from publisher.config import Digest, load_config
from publisher.digest.issue import Window, compose_issue, select_articles
from publisher.digest.personalize import Recipient, prepare
from publisher.tokens import Signer

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--articles", type=int, default=20)
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="digest-bench-"))
    try:
        shutil.copy(ROOT / "schedule.yaml", work / "schedule.yaml")
        shutil.copytree(ROOT / "templates", work / "templates")
        write_corpus(work / "articles", args.articles)
        config = (
            (work / "schedule.yaml").read_text().replace("max_articles: 10", "max_articles: 50")
        )
        (work / "schedule.yaml").write_text(config)
        pub = load_config(work / "schedule.yaml")
        digest = pub.config.digests[0]
        report = build(pub, NOW, write=False)
        articles = select_articles(load_articles(pub, report.published), digest, NOW).chosen
        assert len(articles) == args.articles

        times = []
        for number in range(1, args.rounds + 1):
            start = time.perf_counter()
            issue = compose_issue(pub, digest, articles, number, Window(None, NOW), NOW)
            times.append(time.perf_counter() - start)
        assert issue.named.html != issue.unnamed.html.replace("Here is", "Hello X, here is")
        printed = []
        for name in ("digest.html", "digest.txt"):
            file = work / "templates" / "email" / name
            file.write_text(
                file.read_text().replace(
                    "{% if recipient.name %}Hello {{ recipient.name }}, here{% else %}Here"
                    "{% endif %}",
                    "Hello {{ recipient.name }}, here",
                )
            )
        for number in range(1, args.rounds + 1):
            start = time.perf_counter()
            compose_issue(pub, digest, articles, number, Window(None, NOW), NOW)
            printed.append(time.perf_counter() - start)
        letters = prepare(pub, issue, Signer([b"bench-key-0123456789abcdef"]))
        recipients = [
            Recipient(f"reader{i}@example.org", f"Reader {i}", f"s{i}")
            for i in range(args.recipients)
        ]
        size = len(letters.render(recipients[0]))
        rates = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            for recipient in recipients:
                letters.render(recipient)
            rates.append(len(recipients) / (time.perf_counter() - start))
        naive = naive_rate(issue.html, issue.text, issue.subject, recipients[:300])
        choose, plain = choose_times(work, digest, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{args.articles} articles, HTML part {len(issue.html.encode()):,} bytes, "
        f"message {size:,} bytes"
    )
    print(
        f"compose (render + inline + encode), templates testing the name (two inlinings): "
        f"median {statistics.median(times):.3f} s, min {min(times):.3f}, "
        f"max {max(times):.3f}  [target <= 0.5 s]"
    )
    print(
        f"compose, templates printing the name (one inlining): median "
        f"{statistics.median(printed):.3f} s, min {min(printed):.3f}, max {max(printed):.3f} "
        f"(ratio {statistics.median(times) / statistics.median(printed):.2f}x)"
    )
    print(
        f"choose (ledger + 10,000 articles, 500 issues sent): median {choose * 1000:.1f} ms; "
        f"reference, the same with nothing sent: {plain * 1000:.1f} ms "
        f"(ratio {choose / plain:.2f}x)"
    )
    print(
        f"personalize: median {statistics.median(rates):,.0f} msgs/s, min {min(rates):,.0f}, "
        f"max {max(rates):,.0f}  [target >= 20,000/s]"
    )
    print(
        f"reference, EmailMessage + as_bytes per recipient: {naive:,.0f} msgs/s "
        f"(ratio {statistics.median(rates) / naive:,.0f}x)"
    )


class Filed(NamedTuple):
    slug: str
    date: datetime
    tags: tuple[str, ...]
    draft: bool


def choose_times(work: Path, digest: Digest, rounds: int) -> tuple[float, float]:
    from publisher import store
    from publisher.store import ledger

    filed = [Filed(f"a{n}", NOW - timedelta(hours=n), (), False) for n in range(10_000)]
    engine = store.connect(f"sqlite:///{work / 'state.db'}")
    with engine.begin() as db:
        for number in range(1, 501):
            slugs = [f"a{n}" for n in range(10_000 - number * 20, 10_020 - number * 20)]
            ledger.create_issue(db, digest.name, digest.list_name, number, (None, 1.0), 1.0,
                                None, slugs)  # fmt: skip
    timed, reference = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        with engine.connect() as db:
            sent = ledger.sent_articles(db, digest.name)
        select_articles(filed, digest, NOW, sent.slugs)
        timed.append(time.perf_counter() - start)
        start = time.perf_counter()
        select_articles(filed, digest, NOW)
        reference.append(time.perf_counter() - start)
    engine.dispose()
    return statistics.median(timed), statistics.median(reference)


def naive_rate(html: str, text: str, subject: str, recipients: list[Recipient]) -> float:
    start = time.perf_counter()
    for recipient in recipients:
        message = EmailMessage()
        message["From"] = "Kestrel Bay Notes <news@kestrelbay.example>"
        message["To"] = f"{recipient.name} <{recipient.address}>"
        message["Subject"] = subject
        message["List-Unsubscribe"] = f"<https://example.org/u/{recipient.id}>"
        message.set_content(text.replace("XPUBSLOT", recipient.name))
        message.add_alternative(html.replace("XPUBSLOT", recipient.name), subtype="html")
        message.as_bytes()
    return len(recipients) / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
