"""What goes into an issue is what its digest has not sent yet, and what the operator is
shown (``preview``, ``send --dry-run``, ``send --test``) is the issue ``send`` sends."""

from __future__ import annotations

import email
import json
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from email import policy
from pathlib import Path

from sqlalchemy import text

from publisher import store
from publisher.backends.memory import MemoryBackend
from publisher.config import Publication, load_config

from .conftest import NOW, Ran
from .sending import send
from .smtpserver import smtp_server

WEEK = timedelta(days=7)
SECRET = {"PUBLISHER_SECRET": "a-secret-of-the-test-0123456789"}


def subscribe(pub: Publication, *people: tuple[str, str]) -> None:
    engine = store.connect(pub.database_url)
    with engine.begin() as db:
        for address, name in people:
            store.add_subscriber(db, address, name, "weekly", NOW.timestamp())
    engine.dispose()


def article(example: Path, slug: str, date: str, title: str = "") -> None:
    (example / "articles" / f"{slug}.md").write_text(
        f"---\ntitle: {title or slug.title()}\ndate: {date}\ntags: [news]\n---\nText of {slug}.\n"
    )


def issue_slugs(pub: Publication) -> dict[int, list[str]]:
    engine = store.connect(pub.database_url)
    with engine.connect() as db:
        found = db.execute(
            text("SELECT i.number, a.slug FROM issue_articles a JOIN issues i ON i.id = a.issue_id"
                 " WHERE a.included = 1 ORDER BY i.number, a.position")
        ).all()  # fmt: skip
    engine.dispose()
    out: dict[int, list[str]] = {}
    for number, slug in found:
        out.setdefault(number, []).append(slug)
    return out


def configure(example: Path, old: str, new: str) -> Publication:
    config = example / "schedule.yaml"
    config.write_text(config.read_text().replace(old, new))
    return load_config(config)


def test_an_article_filed_late_with_an_old_date_goes_into_the_next_issue(example: Path) -> None:
    pub = load_config(example / "schedule.yaml")
    subscribe(pub, ("a@example.org", "Ann"))
    outbox = MemoryBackend({}, str(pub.root))
    first = send(pub, [outbox], NOW)
    assert [r.number for r in first] == [1]
    # Filed after issue 1 went out, dated a week before it: under date windows it was in
    # the feeds and in no issue.
    article(example, "filed-late", (NOW - WEEK).strftime("%Y-%m-%d %H:%M"))
    second = send(pub, [outbox], NOW + timedelta(hours=1))
    assert [r.number for r in second] == [2]
    assert issue_slugs(pub)[2] == ["filed-late"]
    assert "filed-late" not in issue_slugs(pub)[1]


def test_articles_past_max_articles_wait_for_the_next_issue_and_send_says_so(
    example: Path, cli: Callable[..., Ran]
) -> None:
    pub = configure(example, "max_articles: 10", "max_articles: 3")
    subscribe(pub, ("a@example.org", "Ann"))
    first = cli("send", "weekly", "--now", NOW.isoformat(), cwd=example, env=SECRET)
    assert first.returncode == 0, first.stderr
    assert "weekly #1: done" in first.stdout
    assert "7 more article(s) wait for the next issue" in first.stdout
    status = cli("status", "--json", cwd=example, env=SECRET)
    assert json.loads(status.stdout)["digests"][0]["articles_waiting"] == 7
    for hour in range(1, 4):
        later = (NOW + timedelta(hours=hour)).isoformat()
        assert cli("send", "weekly", "--now", later, cwd=example, env=SECRET).returncode == 0
    held = issue_slugs(pub)
    assert [len(held[n]) for n in sorted(held)] == [3, 3, 3, 1]
    everything = [slug for n in sorted(held) for slug in held[n]]
    assert len(everything) == len(set(everything)) == 10  # each article once, none left
    done = cli(
        "send", "weekly", "--now", (NOW + timedelta(hours=5)).isoformat(), cwd=example, env=SECRET
    )
    assert "nothing new to send" in done.stdout


def test_overflow_drop_passes_the_rest_over_and_says_how_many(
    example: Path, cli: Callable[..., Ran]
) -> None:
    pub = configure(example, "max_articles: 10", "max_articles: 3\n    overflow: drop")
    subscribe(pub, ("a@example.org", "Ann"))
    dry = cli("send", "weekly", "--dry-run", "--now", NOW.isoformat(), cwd=example, env=SECRET)
    assert "would send issue 1 with 3 article(s)" in dry.stdout
    assert "7 older article(s) passed over (overflow: drop)" in dry.stdout
    sent = cli("send", "weekly", "--now", NOW.isoformat(), cwd=example, env=SECRET)
    assert "7 older article(s) passed over (overflow: drop)" in sent.stdout
    later = cli(
        "send", "weekly", "--now", (NOW + timedelta(hours=1)).isoformat(), cwd=example, env=SECRET
    )
    assert "nothing new to send" in later.stdout
    assert list(issue_slugs(pub)) == [1]


def test_an_article_edited_after_it_was_sent_is_not_sent_again(example: Path) -> None:
    pub = load_config(example / "schedule.yaml")
    subscribe(pub, ("a@example.org", "Ann"))
    outbox = MemoryBackend({}, str(pub.root))
    send(pub, [outbox], NOW)
    welcome = example / "articles" / "welcome.md"
    welcome.write_text(welcome.read_text().replace("Welcome to", "Welcome (updated) to"))
    assert send(pub, [outbox], NOW + timedelta(hours=1)) == []
    assert len(outbox.outbox) == 1


def test_dry_run_and_preview_after_an_issue_went_out_say_nothing_new(
    example: Path, cli: Callable[..., Ran], tmp_path: Path
) -> None:
    pub = load_config(example / "schedule.yaml")
    subscribe(pub, ("a@example.org", "Ann"))
    now = ["--now", NOW.isoformat()]
    assert cli("send", "weekly", *now, cwd=example, env=SECRET).returncode == 0
    dry = cli("send", "weekly", "--dry-run", *now, cwd=example, env=SECRET)
    assert dry.stdout.strip() == "weekly: nothing new to send"
    shown = cli("preview", "weekly", "--out", str(tmp_path / "p"), *now, cwd=example, env=SECRET)
    assert shown.returncode == 0 and "nothing new to send" in shown.stdout
    assert not (tmp_path / "p").exists()
    # Later, one new article: preview, --dry-run and send all speak of issue 2 with it.
    article(example, "next-one", (NOW + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M"))
    week = ["--now", (NOW + timedelta(hours=2)).isoformat()]
    dry = cli("send", "weekly", "--dry-run", *week, cwd=example, env=SECRET)
    assert dry.stdout.strip() == "weekly: would send issue 2 with 1 article(s) to 1 subscriber(s)"
    shown = cli("preview", "weekly", "--out", str(tmp_path / "p"), *week, cwd=example, env=SECRET)
    assert "weekly.eml: issue 2 with 1 article(s)" in shown.stdout
    real = cli("send", "weekly", "--json", *week, cwd=example, env=SECRET)
    issues = json.loads(real.stdout)["issues"]
    assert [(i["number"], i["sent"]) for i in issues] == [(2, 1)]


def test_preview_and_test_are_byte_for_byte_the_message_send_delivers(
    example: Path, cli: Callable[..., Ran], tmp_path: Path
) -> None:
    """Issue 2: the preview's .eml, the --test message and what the SMTP server receives
    for the same person (the preview's sample recipient, subscribed, with the sample's id:
    the same token) are the same bytes."""
    with smtp_server() as (controller, script):
        pub = configure(
            example, "backend:\n  type: maildir\n  path: outbox",
            f"backend:\n  type: smtp\n  host: 127.0.0.1\n  port: {controller.port}\n  tls: none",
        )  # fmt: skip
        subscribe(pub, ("sam@example.com", "Sam Example"), ("nameless@example.org", ""))
        engine = store.connect(pub.database_url)
        with engine.begin() as db:
            db.execute(
                text("UPDATE subscribers SET public_id = 'preview' WHERE key = 'sam@example.com'")
            )
        engine.dispose()
        assert (
            cli("send", "weekly", "--now", NOW.isoformat(), cwd=example, env=SECRET).returncode == 0
        )
        article(example, "second", (NOW + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M"))
        when = ["--now", (NOW + timedelta(hours=2)).isoformat()]
        shown = cli(
            "preview", "weekly", "--out", str(tmp_path / "p"), *when, cwd=example, env=SECRET
        )
        assert shown.returncode == 0, shown.stderr
        test = cli("send", "weekly", "--test", "sam@example.com", *when, cwd=example, env=SECRET)
        assert test.returncode == 0, test.stderr
        tested = script.received[-1][2]
        sent = cli("send", "weekly", *when, cwd=example, env=SECRET)
        assert sent.returncode == 0, sent.stderr
        received = Counter(rcpt for _, rcpt, _ in script.received)
        assert received == {"sam@example.com": 3, "nameless@example.org": 2}
        delivered = script.received[-2:]
    (mine,) = [data for _, rcpt, data in delivered if rcpt == "sam@example.com"]
    preview = (tmp_path / "p" / "weekly.eml").read_bytes()
    assert b"X-Publisher-Issue: weekly-2\r\n" in preview
    assert preview == mine
    assert tested == mine
    parsed = email.message_from_bytes(preview, policy=policy.default)
    plain = parsed.get_body(("plain",))
    assert plain is not None and "Hello Sam Example," in plain.get_content()


def test_a_catch_up_issue_is_dated_when_it_is_composed_not_at_its_period(example: Path) -> None:
    from email.utils import format_datetime

    pub = load_config(example / "schedule.yaml")
    subscribe(pub, ("a@example.org", "Ann"))
    outbox = MemoryBackend({}, str(pub.root))
    reports = send(pub, [outbox], NOW, period=NOW - WEEK)  # a week late
    assert [r.number for r in reports] == [1]
    ((_, message),) = outbox.outbox
    head = message.split(b"\r\n\r\n", 1)[0].decode()
    assert f"\r\nDate: {format_datetime(NOW)}\r\n" in head
