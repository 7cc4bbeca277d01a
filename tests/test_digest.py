"""Digest issues: golden message, headers, injection, sandbox, no network, lint, what an
issue takes."""

from __future__ import annotations

import email
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.build import build, load_articles
from publisher.config import Publication, load_config
from publisher.digest.issue import Window, compose_issue, select_articles
from publisher.digest.personalize import Letters, Recipient, prepare
from publisher.digest.templates import TemplateError
from publisher.headers import InvalidAddress
from publisher.tokens import Signer

from .conftest import NOW, Ran

GOLDEN = Path(__file__).parent / "golden" / "weekly.eml"
KEY = b"test-key-0123456789abcdef"
INJECTIONS = [
    "\r",
    "\n",
    "trailing\n",
    "nul\x00byte",
    "line\u2028separator",
    "=?UTF-8?Q?=0A?=Bcc: x@example.org",
    "a\r\nBcc: x@example.org",
]


def letters_for(pub: Publication, number: int = 1, now: datetime = NOW) -> Letters:
    digest = pub.config.digests[0]
    report = build(pub, now, write=False)
    articles = select_articles(load_articles(pub, report.published), digest, now).chosen
    issue = compose_issue(pub, digest, articles, number, Window(None, now), now)
    return prepare(pub, issue, Signer([KEY]))


@pytest.fixture
def example_pub(example: Path) -> Publication:
    return load_config(example / "schedule.yaml")


def parse(data: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


@pytest.mark.parametrize(
    ("golden", "recipient"),
    [
        (GOLDEN, Recipient("sam@example.com", "Sam Example", "s1")),
        (GOLDEN.with_name("weekly-unnamed.eml"), Recipient("nameless@example.com", "", "s2")),
    ],
)
def test_golden_message(
    example_pub: Publication, update_golden: bool, golden: Path, recipient: Recipient
) -> None:
    data = letters_for(example_pub).render(recipient)
    if update_golden:
        golden.write_bytes(data)
    assert data.decode() == golden.read_bytes().decode()


def test_headers(example_pub: Publication) -> None:
    letters = letters_for(example_pub)
    message = parse(letters.render(Recipient("zoe@example.org", "Zoë Ørsted", "z1")))
    assert message["From"] == "Kestrel Bay Notes <news@kestrelbay.example>"
    assert message["Reply-To"] == "editor@kestrelbay.example"
    assert message["To"] == "Zoë Ørsted <zoe@example.org>"
    assert message["Subject"].startswith("Kestrel Bay Notes: Storm Ionë leaves")
    assert message["Date"] == "Sat, 28 Nov 2026 12:00:00 +0000"
    assert message["Message-ID"].endswith("@kestrelbay.example>")
    assert message["List-Id"] == "Kestrel Bay Notes <weekly.notes.kestrelbay.example>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    raw = letters.render(Recipient("zoe@example.org", "Zoë Ørsted", "z1"))
    line = next(line for line in raw.split(b"\r\n") if line.startswith(b"List-Unsubscribe:"))
    token = letters.signer.sign("unsubscribe", "z1")
    assert line == (
        b"List-Unsubscribe: <https://notes.kestrelbay.example/unsubscribe/"
        + token.encode()
        + b">, <mailto:unsubscribe@kestrelbay.example?subject=unsubscribe%20"
        + token.encode()
        + b">"
    )
    assert b"zoe@example.org" not in token.encode()
    for name in ("From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe"):
        assert len(message.get_all(name) or []) == 1
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


def test_personal_values_land_in_both_parts(example_pub: Publication) -> None:
    letters = letters_for(example_pub)
    message = parse(letters.render(Recipient("a@example.org", "Ann <b>&amp;", "a1")))
    plain, rich = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and rich is not None
    text, html = plain.get_content(), rich.get_content()
    assert "Hello Ann <b>&amp;, here is" in text
    assert "Hello Ann &lt;b&gt;&amp;amp;, here is" in html
    link = letters.unsubscribe_link(Recipient("a@example.org", "", "a1"))
    assert f'href="{link}"' in html and f"Unsubscribe: {link}" in text
    assert "XPUBSLOT" not in text + html


def test_same_recipient_same_message_id(example_pub: Publication) -> None:
    letters = letters_for(example_pub)
    first = parse(letters.render(Recipient("a@example.org", "A", "a1")))["Message-ID"]
    again = parse(letters.render(Recipient("a@example.org", "A", "a1")))["Message-ID"]
    other = parse(letters.render(Recipient("b@example.org", "A", "b1")))["Message-ID"]
    assert first == again != other


@pytest.mark.parametrize("evil", INJECTIONS)
def test_no_header_injection_from_names_titles_or_subjects(example: Path, evil: str) -> None:
    (example / "articles" / "evil.md").write_text(
        f"---\ntitle: {evil!r}\ndate: 2026-11-27\n---\nBody.\n".replace("'", '"'), "utf-8"
    )
    config = example / "schedule.yaml"
    text = config.read_text()
    text = text.replace(
        'subject: "Kestrel Bay Notes:', 'subject: "{{ first.title }} Kestrel Bay Notes:'
    )
    config.write_text(text)
    pub = load_config(config)
    data = letters_for(pub).render(Recipient("v@example.org", f"Vic {evil} Tim", "v1"))
    message = parse(data)
    assert message.get_all("Bcc") is None
    assert len(message.get_all("To") or []) == 1
    header_block = data.split(b"\r\n\r\n", 1)[0]
    names = [
        line.split(b":", 1)[0]
        for line in header_block.split(b"\r\n")
        if line and line[:1] not in b" \t"
    ]
    assert b"Bcc" not in names
    assert all(b"\n" not in line and b"\r" not in line for line in header_block.split(b"\r\n"))
    assert "\n" not in str(message["Subject"]) and "\n" not in str(message["To"])


names = st.text(st.characters(codec=None, exclude_categories=()), max_size=60)
addresses = st.emails().filter(lambda a: len(a) <= 254)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=names, address=addresses)
def test_any_name_and_address_keep_the_structure(
    example_pub: Publication, name: str, address: str
) -> None:
    letters = _cached_letters(example_pub)
    try:
        data = letters.render(Recipient(address, name, "p1"))
    except InvalidAddress:
        return  # refused before it reaches a header: fine
    message = parse(data)
    assert message.get_content_type() == "multipart/alternative"
    assert len(message.get_all("To") or []) == 1
    assert message["To"].addresses[0].addr_spec.lower() == address.lower()
    header_names = [k.lower() for k in message]
    assert sorted(header_names) == sorted(
        ["from", "reply-to", "subject", "date", "mime-version", "list-id",
         "list-unsubscribe-post", "x-publisher-issue", "content-type", "to",
         "message-id", "list-unsubscribe"]
    )  # fmt: skip
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]


_LETTERS: dict[str, Letters] = {}


def _cached_letters(pub: Publication) -> Letters:
    # Compose once for all hypothesis examples: they vary only the recipient.
    if "x" not in _LETTERS:
        _LETTERS["x"] = letters_for(pub)
    return _LETTERS["x"]


def write_template(pub: Publication, body: str) -> None:
    (pub.templates_dir / "digest.html").write_text(body, "utf-8")


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ ''.__class__.__mro__ }}", "unsafe"),
        ("{{ range(10**9) | list }}", "Range too big"),
        (
            "{% for i in range(100) %}{% endfor %}{{ missing_variable }}",
            "'missing_variable' is undefined",
        ),
        ("{{ unsubscribe_url.__class__.__init__.__globals__ }}", "unsafe"),
        # What a template is given is not its to change: one render must not leak into
        # the next recipient's.
        ("{{ articles.append(1) }}", "unsafe"),
        ("{{ issue.update(number=2) }}", "unsafe"),
    ],
)
def test_template_sandbox_and_strict_undefined(
    example_pub: Publication, template: str, message: str
) -> None:
    write_template(example_pub, template)
    with pytest.raises(TemplateError) as caught:
        letters_for(example_pub)
    assert message in str(caught.value)


def test_template_syntax_error_has_its_line(example_pub: Publication) -> None:
    write_template(example_pub, "line one\nline two\n{% if %}\n")
    with pytest.raises(TemplateError) as caught:
        letters_for(example_pub)
    assert str(caught.value).endswith(
        "digest.html:3: template: Expected an expression, got 'end of statement block'"
    )


def test_nothing_is_fetched_while_rendering(
    example_pub: Publication, listener: tuple[str, list[str]]
) -> None:
    url, requests = listener
    base = (example_pub.templates_dir / "base.html").read_text()
    base = base.replace("</head>", f'<link rel="stylesheet" href="{url}/evil.css">\n</head>')
    (example_pub.templates_dir / "base.html").write_text(base)
    try:
        letters_for(example_pub)
    except TemplateError as exc:
        assert "cannot inline CSS" in str(exc)
    assert requests == []


def test_lint_finds_what_hurts(example_pub: Publication) -> None:
    write_template(
        example_pub,
        "<html><head><style>@font-face { font-family: x; src: url(x.woff); } p { color: red; }"
        "</style></head><body>{% raw %}{{ left }}{% endraw %}"
        + "<p>x</p>" * 15000
        + "</body></html>",
    )
    warnings = letters_for(example_pub).issue.warnings
    text = "\n".join(warnings)
    assert "Gmail clips" in text
    assert "leftover template syntax '{{'" in text
    assert "HTML part has no unsubscribe link" in text
    assert "CSS dropped by the inliner: 1 @font-face rule(s)" in text
    assert not any("text part" in w for w in warnings)  # the .txt template is fine


def test_example_digest_lints_clean(example_pub: Publication) -> None:
    assert letters_for(example_pub).issue.warnings == []


def test_an_issue_takes_what_its_digest_has_not_sent_by_tag_newest_first(
    site: Callable[..., Publication],
) -> None:
    config = (
        "site:\n  title: S\n  url: https://s.example/\n  author: A\n"
        "email:\n  unsubscribe_url: https://s.example/u/{token}\n"
        "digests:\n  - name: d\n    from: s@s.example\n    tags: [keep]\n    max_articles: 2\n"
    )
    files = {
        f"articles/a{i}.md": f"---\ntitle: A{i}\ndate: 2026-11-{10 + i}\ntags: [{'keep' if i % 2 else 'drop'}]\n---\nx\n"
        for i in range(8)
    }
    pub = site(files, config=config)
    articles = load_articles(pub, build(pub, NOW, write=False).published)
    digest = pub.config.digests[0]
    cut = datetime(2026, 11, 14, tzinfo=UTC)
    first = select_articles(articles, digest, cut)
    assert [a.title for a in first.chosen] == ["A3", "A1"] and first.rest == []
    now = select_articles(articles, digest, NOW, frozenset(a.slug for a in first.chosen))
    assert [a.title for a in now.chosen] == ["A7", "A5"]
    # What the issues from before articles were recorded took: everything up to a moment.
    assert select_articles(articles, digest, NOW, sent_until=NOW).chosen == []
    everything = select_articles(articles, digest, NOW)
    assert [a.title for a in everything.rest] == ["A3", "A1"]  # max_articles: they wait


@dataclass(frozen=True)
class Filed:
    slug: str
    date: datetime
    tags: tuple[str, ...] = ()
    draft: bool = False


@given(
    steps=st.lists(
        st.lists(st.integers(min_value=-30, max_value=30), max_size=6), min_size=1, max_size=8
    ),
    most=st.integers(min_value=1, max_value=4),
)
def test_every_published_article_reaches_exactly_one_issue(
    steps: list[list[int]], most: int
) -> None:
    """Articles filed at any time with any date (backdated, or ahead of time): each issue
    takes what is published and not sent; once the filing stops, every article has been in
    exactly one issue, whatever max_articles."""
    from publisher.config.models import Digest

    digest = Digest.model_validate({"name": "d", "from": "s@s.example", "max_articles": most})
    filed: list[Filed] = []
    sent: list[str] = []
    day = datetime(2026, 1, 1, tzinfo=UTC)
    for step, offsets in enumerate([*steps, *[[]] * 100]):
        now = day + timedelta(days=step)
        filed += [Filed(f"s{step}-{n}", now + timedelta(days=o)) for n, o in enumerate(offsets)]
        sent += [a.slug for a in select_articles(filed, digest, now, frozenset(sent)).chosen]
    assert sorted(sent) == sorted(a.slug for a in filed)


def test_dkim_signature_verifies(
    example_pub: Publication, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dkim
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    monkeypatch.setenv("TEST_DKIM_KEY", pem.decode())
    config = example_pub.path
    config.write_text(
        config.read_text().replace(
            "  secret_env: PUBLISHER_SECRET",
            "  secret_env: PUBLISHER_SECRET\n  dkim:\n    domain: kestrelbay.example\n"
            "    selector: s1\n    key_env: TEST_DKIM_KEY",
        )
    )
    pub = load_config(config)
    data = letters_for(pub).render(Recipient("d@example.org", "Dee", "d1"))
    assert data.startswith(b"DKIM-Signature:")
    import base64

    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.kestrelbay.example."
        return record

    assert dkim.verify(data, dnsfunc=dns)
    signed = parse(data)["DKIM-Signature"]
    for header in (
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
    ):
        assert header in signed.replace(" ", "").split("h=")[1].split(";")[0].lower().split(":")


def test_preview_command(example: Path, tmp_path: Path, cli: Callable[..., Ran]) -> None:
    out = tmp_path / "preview"
    done = cli("preview", "weekly", "--out", str(out), "--now", "2026-11-28T12:00:00Z",
               cwd=example, unset=("PUBLISHER_SECRET",))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["weekly.eml", "weekly.html", "weekly.txt"]
    assert "Hello Sam Example" in (out / "weekly.html").read_text()
    assert "PUBLISHER_SECRET is not set" in done.stderr
    missing = cli("preview", "monthly", "--out", str(out), cwd=example)
    assert missing.returncode == 1
    assert missing.stderr.endswith(": digests: no digest named 'monthly' (digests: weekly)\n")
    assert missing.stderr.startswith("schedule.yaml:")


def test_check_reports_missing_unsubscribe_url(example: Path, cli: Callable[..., Ran]) -> None:
    config = example / "schedule.yaml"
    config.write_text(
        config.read_text().replace(
            '  unsubscribe_url: "https://notes.kestrelbay.example/unsubscribe/{token}"\n', ""
        )
    )
    done = cli("check", "--now", "2026-11-28T12:00:00Z", cwd=example)
    assert done.returncode == 1
    assert done.stderr.startswith("schedule.yaml:")
    assert "email.unsubscribe_url: digests need an https URL with {token}" in done.stderr


def _plain(message: bytes) -> str:
    parsed = email.message_from_bytes(message, policy=policy.default)
    body = parsed.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def test_a_subscriber_without_a_name_is_not_greeted_with_an_empty_one(
    example_pub: Publication,
) -> None:
    letters = letters_for(example_pub)
    nameless = _plain(letters.render(Recipient("x@example.org", "", "p1")))
    named = _plain(letters.render(Recipient("y@example.org", "Ann", "p2")))
    assert "Hello ," not in nameless and "Here is what happened in the bay." in nameless
    assert "Hello Ann, here is what happened in the bay." in named
    # A name of blanks only is no name.
    assert "Hello" not in _plain(letters.render(Recipient("z@example.org", " \t", "p3")))


def test_a_template_can_fall_back_when_there_is_no_name(example: Path) -> None:
    for name in ("digest.txt", "digest.html"):
        file = example / "templates" / "email" / name
        file.write_text(
            file.read_text().replace(
                "{% if recipient.name %}Hello {{ recipient.name }}, here{% else %}Here{% endif %}",
                'Dear {{ recipient.name or "reader" }}, here',
            )
        )
    letters = letters_for(load_config(example / "schedule.yaml"))
    assert "Dear reader, here is" in _plain(letters.render(Recipient("x@example.org", "")))
    assert "Dear Ann, here is" in _plain(letters.render(Recipient("y@example.org", "Ann")))
    html = letters.render(Recipient("x@example.org", "")).decode()
    assert "Dear reader, here is" in html.replace("=\r\n", "")
