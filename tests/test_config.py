"""schedule.yaml: every error names its file, line and dotted path; YAML 1.1 traps are
read as people mean them or refused, never silently misread."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from publisher.config import load_config
from publisher.errors import ConfigError

SITE = """\
site:
  title: Notes
  url: https://n.example/
  author: Ann
"""
DIGEST = "digests:\n  - name: weekly\n    from: a@n.example\n"


def errors(tmp_path: Path, text: str | bytes) -> list[str]:
    path = tmp_path / "schedule.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text), "utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    prefix = str(path)
    return [str(p).replace(prefix, "schedule.yaml") for p in caught.value.problems]


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "schedule.yaml"
    path.write_text(textwrap.dedent(text), "utf-8")
    return load_config(path).config


CASES = [
    (
        "unknown-key",
        SITE + "feeds:\n  itmes: 5\n",
        "schedule.yaml:6: feeds.itmes: unknown key "
        "(known keys: archive_size, content, folder, formats, hubs, items, schedule, tags, url)",
    ),
    (
        "unknown-section",
        SITE + "digest: {}\n",
        "schedule.yaml:5: digest: unknown key (known keys: backend, content, delivery, digests, email, feeds, returns, site, sources, state, templates, web, website, workers)",
    ),
    ("missing", "site:\n  title: Notes\n  author: Ann\n", "schedule.yaml:1: site.url: is required"),
    (
        "leading-zero",
        SITE + "feeds:\n  items: 012\n",
        "schedule.yaml:6: feeds.items: '012' has a leading zero; write it without (or quote it as text)",
    ),
    (
        "not-a-number",
        SITE + "feeds:\n  items: ten\n",
        "schedule.yaml:6: feeds.items: 'ten' is not a whole number",
    ),
    (
        "negative",
        SITE + "feeds:\n  items: -1\n",
        "schedule.yaml:6: feeds.items: Input should be greater than or equal to 0",
    ),
    (
        "zone",
        SITE + "  timezone: Europe/Berln\n",
        "schedule.yaml:5: site.timezone: 'Europe/Berln' is not a known IANA time zone "
        "(e.g. Europe/Berlin, UTC)",
    ),
    (
        "url",
        "site:\n  title: Notes\n  url: n.example\n  author: Ann\n",
        "schedule.yaml:3: site.url: 'n.example' is not an absolute http(s) URL",
    ),
    (
        "language",
        SITE + "  language: english please\n",
        "schedule.yaml:5: site.language: 'english please' is not a language tag such as en or en-GB",
    ),
    (
        "permalink",
        SITE + "  permalink: posts/\n",
        "schedule.yaml:5: site.permalink: 'posts/' must contain {slug}",
    ),
    (
        "permalink-year",
        SITE + '  permalink: "articles/{year}/{slug}/"\n',
        "schedule.yaml:5: site.permalink: unknown placeholder {year} in "
        "'articles/{year}/{slug}/' (placeholders: {slug})",
    ),
    (
        "permalink-index",
        SITE + '  permalink: "{slug}/{0}"\n',
        "schedule.yaml:5: site.permalink: unknown placeholder {0} in '{slug}/{0}' "
        "(placeholders: {slug})",
    ),
    (
        "permalink-brace",
        SITE + '  permalink: "{slug}/{"\n',
        "schedule.yaml:5: site.permalink: '{slug}/{' has an unmatched brace "
        "(placeholders: {slug}; write {{ or }} for a brace)",
    ),
    (
        "archive_url",
        SITE + 'email:\n  archive_url: "https://n.example/i/{digest}/{num}/"\n',
        "schedule.yaml:6: email.archive_url: unknown placeholder {num} in "
        "'https://n.example/i/{digest}/{num}/' (placeholders: {digest}, {number})",
    ),
    (
        "unsubscribe_url",
        SITE + 'email:\n  unsubscribe_url: "https://n.example/u/{tok}"\n',
        "schedule.yaml:6: email.unsubscribe_url: unknown placeholder {tok} in "
        "'https://n.example/u/{tok}' (placeholders: {token})",
    ),
    (
        "literal",
        SITE + "feeds:\n  content: everything\n",
        "schedule.yaml:6: feeds.content: Input should be 'full' or 'summary'",
    ),
    (
        "list-item",
        SITE + "feeds:\n  formats: [rss, rdf]\n",
        "schedule.yaml:6: feeds.formats[1]: Input should be 'rss', 'atom' or 'json'",
    ),
    ("list", SITE + "feeds:\n  formats: rss\n", "schedule.yaml:6: feeds.formats: must be a list"),
    (
        "mapping",
        SITE + "feeds: yes\n",
        "schedule.yaml:5: feeds: must be a mapping of keys to values",
    ),
    (
        "text",
        "site:\n  title: [a, b]\n  url: https://n.example/\n  author: Ann\n",
        "schedule.yaml:2: site.title: must be text, not a list",
    ),
    (
        "duplicate",
        SITE + "  title: Again\n",
        "schedule.yaml:5: site.title: duplicate key (first at line 2)",
    ),
    ("key-not-text", SITE + "feeds:\n  [a]: 1\n", "schedule.yaml:6: feeds: keys must be text"),
    (
        "syntax",
        SITE + "feeds:\n  items: [1, 2\n",
        "schedule.yaml:7: yaml: while parsing a flow sequence did not find expected ',' or ']'",
    ),
    (
        "truncated",
        'site:\n  title: "Notes\n',
        "schedule.yaml:3: yaml: while scanning a quoted scalar found unexpected end of stream",
    ),
    ("empty", "", "schedule.yaml:1: is empty; it needs at least a site: section"),
    ("not-mapping", "- a\n- b\n", "schedule.yaml:1: must be a mapping of sections (site:, feeds:)"),
    (
        "control-char",
        SITE.replace("title: Notes", 'title: "Bell\\a"'),
        "schedule.yaml:2: site.title: contains the control character U+0007",
    ),
    (
        "cron-minute",
        SITE + DIGEST + '    schedule:\n      cron: "61 * * * *"\n',
        "schedule.yaml:9: digests[0].schedule.cron: minute must be 0-59, not 61",
    ),
    (
        "cron-fields",
        SITE + DIGEST + "    schedule:\n      cron: 9:30\n",
        "schedule.yaml:9: digests[0].schedule.cron: '9:30' has 1 fields; cron needs 5 (minute hour day month weekday)",
    ),
    (
        "cron-weekday",
        SITE + DIGEST + '    schedule:\n      cron: "0 8 * * 8"\n',
        "schedule.yaml:9: digests[0].schedule.cron: day of week must be 0-7, not 8",
    ),
    (
        "schedule-zone",
        SITE + DIGEST + '    schedule:\n      cron: "0 8 * * 1"\n      timezone: Mars/Olympus\n',
        "schedule.yaml:10: digests[0].schedule.timezone: 'Mars/Olympus' is not a known IANA time zone (e.g. Europe/Berlin, UTC)",
    ),
    (
        "interval-trap",
        SITE + DIGEST + "    schedule:\n      interval: 1:30\n",
        "schedule.yaml:9: digests[0].schedule.interval: '1:30' is not a duration such as 90s, 5m, 4h or 5d",
    ),
    (
        "catch-up-no",
        SITE + DIGEST + '    schedule:\n      cron: "0 8 * * 1"\n      catch_up: no\n',
        "schedule.yaml:10: digests[0].schedule.catch_up: Input should be 'once' or 'skip'",
    ),
    (
        "both-rules",
        SITE + DIGEST + '    schedule:\n      cron: "0 8 * * 1"\n      interval: 1h\n',
        "schedule.yaml:8: digests[0].schedule: give exactly one of cron and interval",
    ),
    (
        "duplicate-digest",
        SITE + DIGEST + "  - name: weekly\n    from: b@n.example\n",
        "schedule.yaml:8: digests[1].name: 'weekly' is already the name of digests[0]",
    ),
    (
        "folder",
        SITE + "state:\n  folder: ''\n",
        "schedule.yaml:6: state.folder: must name a folder",
    ),
]


@pytest.mark.parametrize(("name", "text", "message"), CASES, ids=[c[0] for c in CASES])
def test_config_error_points_at_its_line(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    assert message in errors(tmp_path, text)


def test_every_error_is_reported_not_just_the_first(tmp_path: Path) -> None:
    found = errors(tmp_path, SITE + "feeds:\n  items: 012\n  typo: 1\n  content: x\n")
    assert [m.split(":")[1] for m in found] == ["6", "7", "8"]


def test_not_utf8(tmp_path: Path) -> None:
    assert errors(tmp_path, b"site:\n  title: \xff\n") == ["schedule.yaml:2: not UTF-8 text"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml")
    assert str(caught.value).endswith("nope.yaml: cannot read: No such file or directory")


def test_alias_bomb_is_bounded(tmp_path: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for n in "bcdefgh":
        prev = chr(ord(n) - 1)
        bomb += (
            f"{n}: &{n} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        )
    found = errors(tmp_path, bomb)
    assert len(found) == 1 and found[0].endswith("document too large")


def test_yaml11_traps_are_read_as_meant(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        site:
          title: 9:30
          url: https://n.example/
          author: no
          language: no
          description: on
        feeds:
          items: 10
        """,
    )
    site = config.site  # type: ignore[attr-defined]
    # YAML 1.1 would have read 570, False, False and True.
    assert site.title == "9:30"
    assert site.author.name == "no"
    assert site.language == "no"  # Norwegian
    assert site.description == "on"
    assert config.feeds.items == 10  # type: ignore[attr-defined]


def test_on_as_a_key_is_a_key_not_true(tmp_path: Path) -> None:
    assert errors(tmp_path, SITE + "on: monday\n") == [
        "schedule.yaml:5: on: unknown key (known keys: backend, content, delivery, digests, email, feeds, returns, site, sources, state, templates, web, website, workers)"
    ]


def test_quoted_null_is_text(tmp_path: Path) -> None:
    config = load(tmp_path, SITE.replace("title: Notes", 'title: "null"'))
    assert config.site.title == "null"  # type: ignore[attr-defined]


def test_defaults_and_paths_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "pub").mkdir()
    path = tmp_path / "pub" / "schedule.yaml"
    path.write_text(SITE, "utf-8")
    pub = load_config(path)
    assert pub.articles_dir == tmp_path / "pub" / "articles"
    assert pub.feeds_url == "https://n.example/feeds/"
    assert pub.config.feeds.formats == ["rss", "atom", "json"]
    assert pub.config.site.timezone == "UTC"


def test_the_example_publication_is_valid() -> None:
    pub = load_config(Path(__file__).resolve().parent.parent / "schedule.yaml")
    assert pub.config.site.title == "Kestrel Bay Notes"


# --- values that reach mail headers: exactly one address, no control character ----------

HEADER_CASES = [
    (
        "unsubscribe-mailto-crlf",
        SITE + 'email:\n  unsubscribe_mailto: "u@n.example\\r\\nBcc: x@evil.example"\n',
        "schedule.yaml:6: email.unsubscribe_mailto: contains the control character U+000D",
    ),
    (
        "bounce-address-crlf",
        SITE + 'delivery:\n  bounce_address: "b@n.example\\nBcc: x@evil.example"\n',
        "schedule.yaml:6: delivery.bounce_address: contains the control character U+000A",
    ),
    (
        "from-crlf",
        SITE + 'digests:\n  - name: weekly\n    from: "Notes\\r\\nBcc: x@evil <news@n.example>"\n',
        "schedule.yaml:7: digests[0].from: contains the control character U+000D",
    ),
    (
        "from-two-addresses",
        SITE + "digests:\n  - name: weekly\n    from: a@n.example, b@n.example\n",
        "schedule.yaml:7: digests[0].from: 'a@n.example, b@n.example' is not one address ('Name <a@example.org>')",
    ),
    (
        "reply-to-bad",
        SITE
        + "digests:\n  - name: weekly\n    from: a@n.example\n    reply_to: editor@@n.example\n",
        "schedule.yaml:8: digests[0].reply_to: 'editor@@n.example' is not a valid address",
    ),
    (
        "bounce-address-with-name",
        SITE + "delivery:\n  bounce_address: Bounces <b@n.example>\n",
        "schedule.yaml:6: delivery.bounce_address: 'Bounces <b@n.example>' must be a bare address such as bounces@example.org",
    ),
    (
        "author-email-line-separator",
        'site:\n  title: Notes\n  url: https://n.example/\n  author:\n    name: Ann\n    email: "ann@n.example\\u2028Bcc: x@evil"\n',
        "schedule.yaml:6: site.author.email: contains the control character U+2028",
    ),
    (
        "dkim-selector",
        SITE + 'email:\n  dkim:\n    domain: n.example\n    selector: "s1; h=x"\n    key_env: K\n',
        "schedule.yaml:8: email.dkim.selector: 's1; h=x' is not a domain name or selector such as s2026",
    ),
]


@pytest.mark.parametrize(
    ("text", "message"), [c[1:] for c in HEADER_CASES], ids=[c[0] for c in HEADER_CASES]
)
def test_header_values_from_schedule_yaml_are_one_clean_address(
    tmp_path: Path, text: str, message: str
) -> None:
    assert errors(tmp_path, text) == [message]


def test_good_addresses_are_accepted(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        SITE
        + "digests:\n  - name: weekly\n    from: '\"Notes, of the Bay\" <news@n.example>'\n    reply_to: editor@n.example\n"
        + "delivery:\n  bounce_address: bounces@n.example\n",
    )
    from publisher.config import Config
    from publisher.headers import parse_sender

    assert isinstance(config, Config)
    assert parse_sender(config.digests[0].sender) == ("Notes, of the Bay", "news@n.example")


@pytest.mark.parametrize(
    ("folder", "apart_from"),
    [
        ("articles", "content.folder 'articles'"),
        (".", "content.folder 'articles'"),
        ("feeds/site", "feeds.folder 'feeds'"),
        ("var", "state.folder 'var'"),
    ],
)
def test_the_site_folder_must_be_apart_from_the_others(
    tmp_path: Path, folder: str, apart_from: str
) -> None:
    """Pages written into the articles would be read back as articles next build."""
    found = errors(tmp_path, SITE + f"website:\n  folder: {folder}\n")
    assert found == [
        f"schedule.yaml:6: website.folder: '{folder}' must be a folder of its own, apart from "
        f"{apart_from}"
    ]
