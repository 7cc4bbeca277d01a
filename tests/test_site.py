"""The site `publisher build` writes and `publisher serve` serves: a page per article at its
permalink, the front page and the tags' pages, the files articles reference; one rule
for relative paths; and every link of a feed, a digest or a page leads somewhere real."""

from __future__ import annotations

import email
import html
import re
import shutil
from collections.abc import Callable
from email import policy
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urlsplit

import pytest

from publisher.build import build
from publisher.config import Publication, load_config

from .conftest import NOW, Ran
from .test_web import fetch, launch_chromium, serving

BASE = "https://notes.kestrelbay.example/"


def pub_of(example: Path, old: str = "", new: str = "") -> Publication:
    config = example / "schedule.yaml"
    if old:
        config.write_text(config.read_text().replace(old, new))
    return load_config(config)


def site_files(pub: Publication) -> dict[str, int]:
    """Every file of the site folder and its mtime."""
    root = pub.site_dir
    return {
        path.relative_to(root).as_posix(): path.stat().st_mtime_ns
        for path in root.rglob("*")
        if path.is_file()
    }


def test_build_writes_a_page_per_article_the_front_page_tags_and_referenced_files(
    example: Path,
) -> None:
    pub = pub_of(example)
    report = build(pub, NOW)
    files = site_files(pub)
    slugs = sorted(entry.slug for entry in report.published)
    pages = sorted(p for p in files if p.startswith("articles/") and p.endswith("/index.html"))
    assert pages == [f"articles/{slug}/index.html" for slug in slugs]
    assert "index.html" in files and "tags/harbour/index.html" in files
    assert "articles/images/lighthouse.png" in files  # the lead image the article names
    assert (pub.site_dir / "articles/images/lighthouse.png").read_bytes() == (
        example / "articles/images/lighthouse.png"
    ).read_bytes()
    assert not any(p.startswith("articles/draft") for p in files)
    page = (pub.site_dir / "articles/welcome/index.html").read_text()
    assert '<html lang="en-GB">' in page
    assert f'<link rel="canonical" href="{BASE}articles/welcome/">' in page
    assert '<meta property="og:title" content="Welcome to Kestrel Bay Notes">' in page
    assert (
        f'type="application/atom+xml" title="Kestrel Bay Notes (Atom)" href="{BASE}feeds/atom.xml"'
        in page
    )
    assert "style.css" in files and '<link rel="stylesheet" href="/style.css">' in page
    assert report.site is not None and report.site.pages == len(files) - 2


def test_front_and_tag_pages_are_paged(example: Path) -> None:
    pub = pub_of(example, "state:\n", "website:\n  per_page: 4\nstate:\n")
    build(pub, NOW)
    files = site_files(pub)
    assert {"index.html", "page/2/index.html", "page/3/index.html"} <= set(files)
    assert "page/4/index.html" not in files  # 10 articles, 4 a page
    second = (pub.site_dir / "page/2/index.html").read_text()
    # Links into the site are written from its root: the same page wherever it is served.
    assert 'href="/" rel="prev">Newer' in second
    assert 'href="/page/3/" rel="next">Older' in second
    assert second.count('<article class="card">') == 4


def test_an_unchanged_page_is_not_written_again_and_a_stale_one_is_removed(
    example: Path,
) -> None:
    pub = pub_of(example)
    build(pub, NOW)
    first = site_files(pub)
    again = build(pub, NOW)
    assert again.site is not None and again.site.written == 0 and again.site.copied == 0
    assert site_files(pub) == first  # not one file touched
    # One article edited: its page and the lists that show it, nothing else.
    welcome = example / "articles" / "welcome.md"
    welcome.write_text(
        welcome.read_text().replace("Welcome to Kestrel", "Welcome again to Kestrel")
    )
    edited = build(pub, NOW)
    changed = {p for p, mtime in site_files(pub).items() if first.get(p) != mtime}
    assert changed == {"articles/welcome/index.html", "index.html", "tags/about/index.html"}
    assert edited.site is not None and edited.site.written == 3
    # An article deleted: its page, and the page of a tag only it had, are removed.
    welcome.unlink()
    gone = build(pub, NOW)
    assert gone.site is not None and gone.site.removed == 2
    files = site_files(pub)
    assert "articles/welcome/index.html" not in files and "tags/about/index.html" not in files
    assert not (pub.site_dir / "articles" / "welcome").exists()


def test_a_page_follows_a_template_change_and_a_deleted_page_comes_back(
    example: Path,
) -> None:
    """Article pages are made while the articles are read; a template changed later, or
    a page deleted by hand, makes them again from the article files."""
    pub = pub_of(example)
    build(pub, NOW)
    page = pub.site_dir / "articles/welcome/index.html"
    (example / "templates" / "web").mkdir(parents=True, exist_ok=True)
    article = (Path(__file__).parent.parent / "publisher/defaults/web/article.html").read_text()
    (example / "templates/web/article.html").write_text(
        article.replace("<article>", "<article class=x>")
    )
    report = build(pub, NOW)
    assert report.rendered == 0 and report.site is not None and report.site.written > 10
    assert "<article class=x>" in page.read_text() and "Kestrel" in page.read_text()
    page.unlink()
    build(pub, NOW)
    assert "<article class=x>" in page.read_text()
    # The same process (the scheduler's), the template changed again and the article
    # edited: its page, made while it is read, has the new template.
    (example / "templates/web/article.html").write_text(
        article.replace("<article>", "<article class=y>")
    )
    welcome = example / "articles" / "welcome.md"
    welcome.write_text(welcome.read_text().replace("Welcome to Kestrel", "Welcome back to Kestrel"))
    build(pub, NOW)
    assert "<article class=y>" in page.read_text() and "Welcome back" in page.read_text()


def test_an_article_deleted_and_back_gets_its_page_again_in_the_same_process(
    example: Path,
) -> None:
    pub = pub_of(example)
    welcome = example / "articles" / "welcome.md"
    text = welcome.read_text()
    build(pub, NOW)
    welcome.unlink()
    build(pub, NOW)
    assert not (pub.site_dir / "articles/welcome").exists()  # its folder went with it
    welcome.write_text(text)
    build(pub, NOW)
    assert (pub.site_dir / "articles/welcome/index.html").is_file()


def test_a_new_article_taking_a_slug_leaves_the_page_to_the_first(example: Path) -> None:
    """A new file claiming a published article's slug is skipped; the page its reader
    wrote meanwhile is not left standing, wherever its `link:` put it."""
    pub = pub_of(example)
    build(pub, NOW)
    page = pub.site_dir / "articles/welcome/index.html"
    before = page.read_text()
    articles = example / "articles"
    (articles / "taker.md").write_text(
        "---\ntitle: Taker\ndate: 2026-11-27 10:00\nslug: welcome\n---\nMine now.\n"
    )
    (articles / "taker-too.md").write_text(
        f"---\ntitle: Taker too\ndate: 2026-11-27 10:00\nslug: welcome\n"
        f"link: {BASE}elsewhere/\n---\nMine too.\n"
    )
    report = build(pub, NOW)
    assert sum("already used" in p.what for p in report.skipped) == 2
    assert page.read_text() == before
    assert not (pub.site_dir / "elsewhere").exists()


def test_a_front_page_template_may_show_whole_articles(example: Path) -> None:
    """The cache keeps what lists show; a list template asking for `article.body` gets
    it all the same."""
    (example / "templates" / "web").mkdir(parents=True, exist_ok=True)
    index = (Path(__file__).parent.parent / "publisher/defaults/web/index.html").read_text()
    (example / "templates/web/index.html").write_text(
        index.replace("<p>{{ article.summary }}</p>", "<div>{{ article.body }}</div>")
    )
    pub = pub_of(example)
    build(pub, NOW)
    front = (pub.site_dir / "index.html").read_text()
    assert "editor@kestrelbay.example" in front  # the last paragraph of welcome.md


def test_the_site_can_be_turned_off(example: Path) -> None:
    pub = pub_of(example, "state:\n", "website:\n  enabled: false\nstate:\n")
    report = build(pub, NOW)
    assert report.site is None and not pub.site_dir.exists()


def test_relative_paths_resolve_against_the_article_folder_in_body_and_front_matter(
    example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(example)
    articles = example / "articles"
    (articles / "notes").mkdir()
    (articles / "notes" / "map.pdf").write_bytes(b"%PDF-1.4 a map")
    (articles / "notes" / "walk.md").write_text(
        "---\ntitle: A walk\ndate: 2026-11-20 10:00\nimage:\n  src: ../images/lighthouse.png\n"
        "  alt: The lighthouse\n---\n"
        "See ![the light](../images/lighthouse.png), [the map](map.pdf),\n"
        "[the welcome](../welcome.md#who), [the tides](/articles/reading-the-tide-tables.md)\n"
        "and [nothing](missing.png).\n"
    )
    pub = pub_of(example)
    report = build(pub, NOW)
    warnings = [str(w) for w in report.warnings if "walk" in w.path]
    assert warnings == ["articles/notes/walk.md:10: link: 'missing.png' does not exist"]
    page = (pub.site_dir / "articles/walk/index.html").read_text()
    # (Links into the site are written from its root in a page's body.)
    image = "articles/images/lighthouse.png"
    assert f'<img src="/{image}" alt="the light">' in page  # the body's path
    assert f'<meta property="og:image" content="{BASE}{image}">' in page  # the front matter's
    assert 'href="/articles/notes/map.pdf"' in page
    assert 'href="/articles/welcome/#who"' in page  # another article: its permalink
    assert 'href="/articles/reading-the-tide-tables/"' in page
    assert (pub.site_dir / "articles/notes/map.pdf").read_bytes() == b"%PDF-1.4 a map"


def test_a_link_follows_the_article_it_names_when_that_article_moves(
    example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unchanged article linking to another's source file: when that one gets a new
    slug, or is deleted, the link follows (or is reported), with no edit to the first."""
    monkeypatch.chdir(example)
    articles = example / "articles"
    (articles / "pointer.md").write_text(
        "---\ntitle: Pointer\ndate: 2026-11-20 10:00\n---\nSee [the tides](reading-the-tide-tables.md).\n"
    )
    pub = pub_of(example)
    build(pub, NOW)
    page = pub.site_dir / "articles/pointer/index.html"
    assert 'href="/articles/reading-the-tide-tables/"' in page.read_text()
    tides = articles / "reading-the-tide-tables.md"
    tides.write_text(tides.read_text().replace("---\n", "---\nslug: tide-tables\n", 1))
    report = build(pub, NOW)
    assert 'href="/articles/tide-tables/"' in page.read_text()
    assert not (pub.site_dir / "articles/reading-the-tide-tables").exists()
    rss = (pub.feeds_dir / "rss.xml").read_text()
    assert "articles/reading-the-tide-tables/" not in rss
    tides.unlink()
    report = build(pub, NOW)
    assert [str(w) for w in report.warnings if "pointer" in w.path] == [
        "articles/pointer.md:5: link: 'reading-the-tide-tables.md' does not exist"
    ]


def test_a_link_to_an_article_published_elsewhere_goes_there(
    example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(example)
    articles = example / "articles"
    (articles / "elsewhere.md").write_text(
        "---\ntitle: Elsewhere\ndate: 2026-11-20 09:00\nlink: https://other.example/post\n---\nx\n"
    )
    (articles / "pointer.md").write_text(
        "---\ntitle: Pointer\ndate: 2026-11-20 10:00\n---\nSee [it](elsewhere.md).\n"
    )
    pub = pub_of(example)
    build(pub, NOW)
    page = (pub.site_dir / "articles/pointer/index.html").read_text()
    assert 'href="https://other.example/post"' in page  # it has no page here


def test_a_deleted_attachment_is_reported_at_the_next_build(
    example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(example)
    articles = example / "articles"
    (articles / "map.pdf").write_bytes(b"%PDF-1.4 a map")
    (articles / "walk.md").write_text(
        "---\ntitle: A walk\ndate: 2026-11-20 10:00\n---\nSee [the map](map.pdf).\n"
    )
    pub = pub_of(example)
    assert not [w for w in build(pub, NOW).warnings if "walk" in w.path]
    assert (pub.site_dir / "articles/map.pdf").exists()
    (articles / "map.pdf").unlink()
    report = build(pub, NOW)
    assert [str(w) for w in report.warnings if "walk" in w.path] == [
        "articles/walk.md:5: link: 'map.pdf' does not exist"
    ]
    assert not (pub.site_dir / "articles/map.pdf").exists()
    assert [str(w) for w in build(pub, NOW).warnings if "walk" in w.path] != []  # every build


def test_a_path_outside_the_publication_is_a_warning(
    example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(example)
    (example / "articles" / "sneaky.md").write_text(
        "---\ntitle: Sneaky\ndate: 2026-11-20 10:00\n---\n![x](../../../etc/passwd)\n"
    )
    report = build(pub_of(example), NOW)
    assert [str(w) for w in report.warnings if "sneaky" in w.path] == [
        "articles/sneaky.md:5: link: '../../../etc/passwd' is outside the publication"
    ]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.found.append(value)


def html_links(text: str) -> list[str]:
    parser = _Links()
    parser.feed(text)
    return parser.found


def feed_links(text: str) -> list[str]:
    """The URLs a feed file names: attributes, <link>/<guid>/<id> texts, JSON values."""
    found = re.findall(r'(?:href|url)="([^"]+)"', text)
    found += re.findall(r"<(?:link|guid|id|uri)(?: [^>]*)?>(https?://[^<]+)</", text)
    found += re.findall(r'"(?:url|external_url|home_page_url|feed_url|image)": "([^"]+)"', text)
    return [html.unescape(link) for link in found]


def resolves(pub: Publication, link: str) -> bool:
    """Whether a link of ours leads to a file of the build or a page of `publisher serve`;
    a link to another host is not ours to check (and must be absolute)."""
    url, _ = urldefrag(link)
    if url.startswith("mailto:"):
        return True
    if url.startswith("/") and not url.startswith("//"):
        url = BASE + url[1:]  # from the site's root
    if not url.startswith(BASE):
        return (
            url.startswith(("https://", "http://"))
            and urlsplit(url).netloc != urlsplit(BASE).netloc
        )
    relative = url[len(BASE) :]
    if relative.startswith("feeds/"):
        return (pub.feeds_dir / relative.removeprefix("feeds/")).is_file()
    if relative.startswith(("subscribe", "unsubscribe/", "confirm/", "issues/")):
        return True  # the routes of `publisher serve` (test_web follows them)
    page = relative + "index.html" if relative.endswith("/") or not relative else relative
    return (pub.site_dir / page).is_file()


def test_every_link_of_the_feeds_the_digest_and_the_pages_resolves(example: Path) -> None:
    from publisher.digest.personalize import Recipient

    from .test_digest import letters_for

    pub = pub_of(example)
    build(pub, NOW)
    named: dict[str, list[str]] = {}
    for path in pub.site_dir.rglob("*.html"):
        named[str(path.relative_to(pub.site_dir))] = html_links(path.read_text())
    for path in pub.feeds_dir.rglob("*"):
        if path.is_file():
            named[str(path.relative_to(pub.root))] = feed_links(path.read_text())
    message = letters_for(pub).render(Recipient("sam@example.com", "Sam", "s1"))
    body = email.message_from_bytes(message, policy=policy.default).get_body(("html",))
    assert body is not None
    named["digest"] = html_links(str(body.get_content()))
    assert sum(len(links) for links in named.values()) > 500
    dangling = [(where, link) for where, links in named.items() for link in links
                if not resolves(pub, link)]  # fmt: skip
    assert dangling == []


def test_the_link_checker_finds_a_dangling_link(example: Path) -> None:
    pub = pub_of(example)
    build(pub, NOW)
    assert not resolves(pub, f"{BASE}articles/no-such-article/")
    assert not resolves(pub, "images/relative.png")
    assert resolves(pub, f"{BASE}articles/welcome/#top")


def test_every_link_of_the_served_publication_leads_somewhere(example: Path) -> None:
    """Crawl `publisher serve` from its front page, the archive of an issue sent and the
    feeds, following every link and image of ours: each answers 200."""
    from publisher.backends.memory import MemoryBackend

    from .conftest import add_reader
    from .sending import send
    from .test_web import KEY

    pub = pub_of(example)
    build(pub, NOW)
    add_reader(pub)
    assert [r.status for r in send(pub, [MemoryBackend({}, str(pub.root))], NOW, signer=KEY)] == [
        "done"
    ]
    with serving(pub) as served:
        queue = ["/", "/issues/weekly/", "/feeds/rss.xml", "/feeds/atom.xml", "/feeds/feed.json"]
        seen = set(queue)
        failed: list[tuple[str, int]] = []
        while queue and len(seen) < 5_000:  # bounded: the example has a few hundred
            path = queue.pop()
            status, headers, body = fetch(served + path)
            if status != 200:
                failed.append((path, status))
                continue
            kind = headers.get("content-type", "")
            text = body.decode("utf-8", "replace")
            if kind.startswith("text/html"):
                links = html_links(text)
            elif "xml" in kind or "json" in kind:
                links = feed_links(text)
            else:
                continue
            for link in links:
                url = urldefrag(html.unescape(link))[0]
                if url.startswith(BASE):
                    url = "/" + url[len(BASE) :]
                if url.startswith("/") and not url.startswith("//") and url not in seen:
                    seen.add(url)
                    queue.append(url)
    assert failed == []
    kinds = {urlsplit(u).path.split("/")[1] for u in seen}
    assert {"articles", "tags", "issues", "feeds", "subscribe", "style.css"} <= kinds
    assert len(seen) > 50 and "/issues/weekly/1/" in seen


def test_a_page_two_articles_claim_is_the_owners_and_the_other_is_told(
    example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(example)
    (example / "articles" / "claims.md").write_text(
        f"---\ntitle: Claims\ndate: 2026-11-27 10:00\nlink: {BASE}articles/welcome/\n---\nMine.\n"
    )
    report = build(pub_of(example), NOW)
    assert [str(w) for w in report.warnings if "claims" in w.path] == [
        f"articles/claims.md:1: link: '{BASE}articles/welcome/' is the page of "
        "articles/welcome.md: this article has no page of its own"
    ]
    page = (example / "site" / "articles" / "welcome" / "index.html").read_text()
    assert "<title>Welcome" in page and "Mine." not in page


def test_serve_serves_the_site_with_caching(example: Path) -> None:
    pub = pub_of(example)
    build(pub, NOW)
    with serving(pub) as base:
        status, headers, body = fetch(f"{base}/")
        assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
        assert b"Kestrel Bay Notes" in body and "etag" in headers
        status, _, _ = fetch(f"{base}/", headers={"If-None-Match": headers["etag"]})
        assert status == 304
        assert fetch(f"{base}/articles/welcome/")[0] == 200
        assert fetch(f"{base}/articles/images/lighthouse.png")[1]["content-type"] == "image/png"
        assert fetch(f"{base}/tags/harbour/")[0] == 200
        assert fetch(f"{base}/articles/nothing-here/")[0] == 404
        assert fetch(f"{base}/subscribe")[0] == 200  # the routes still answer first


def test_check_renders_the_site_templates(example: Path, cli: Callable[..., Ran]) -> None:
    (example / "templates" / "web").mkdir(parents=True, exist_ok=True)
    (example / "templates" / "web" / "tag.html").write_text(
        '{% extends "base.html" %}{% block content %}{{ tag.name }}{% endblock %}\n'
    )
    done = cli("check", cwd=example, env={"PUBLISHER_SECRET": "a-secret-of-the-test-0123"})
    assert done.returncode == 1
    assert "tag.html:1: template: 'str object' has no attribute 'name'" in done.stderr


def test_a_broken_page_template_costs_the_site_not_the_feeds(
    example: Path, cli: Callable[..., Ran]
) -> None:
    """A page template that fails (changed after `publisher check`) is reported with its
    line, without a traceback; the feeds are written all the same."""
    (example / "templates" / "web").mkdir(parents=True, exist_ok=True)
    (example / "templates" / "web" / "article.html").write_text(
        '{% extends "base.html" %}{% block content %}{{ article.nothing }}{% endblock %}\n'
    )
    done = cli("build", "--now", NOW.isoformat(), cwd=example)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "article.html:1: template: 'dict object' has no attribute 'nothing'" in done.stderr
    assert (example / "feeds" / "rss.xml").is_file()
    # The style sheet, made before any page.
    (example / "templates" / "web" / "article.html").unlink()
    shutil.rmtree(example / "feeds")
    (example / "templates" / "web" / "style.css").write_text("body { color: {{ nothing }} }\n")
    done = cli("build", "--now", NOW.isoformat(), cwd=example)
    assert done.returncode == 1 and "style.css:1: template: 'nothing' is undefined" in done.stderr
    assert (example / "feeds" / "rss.xml").is_file()


SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium")
def test_site_pages_in_chromium_fit_a_phone_and_pass_axe(example: Path) -> None:
    """An article page, the front page and a tag page at a phone's and a desktop's width:
    nothing wider than the screen, and no axe-core violation (serious or critical)."""
    pytest.importorskip("playwright")
    from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]
    from playwright.sync_api import sync_playwright

    pub = pub_of(example)
    build(pub, NOW)
    SHOTS.mkdir(parents=True, exist_ok=True)
    pages = {"article": "/articles/lighthouse-restoration/", "front": "/", "tag": "/tags/harbour/"}
    problems: list[str] = []
    with serving(pub) as base, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            for width in (375, 1280):
                page.set_viewport_size({"width": width, "height": 900})
                for name, path in pages.items():
                    page.goto(f"{base}{path}")
                    page.screenshot(path=str(SHOTS / f"site-{name}-{width}.png"), full_page=True)
                    wide = page.evaluate("document.documentElement.scrollWidth")
                    if wide > width:
                        problems.append(f"{name} at {width}px is {wide}px wide")
                    results = Axe().run(page)
                    for violation in results.response["violations"]:
                        if violation["impact"] in ("serious", "critical"):
                            problems.append(f"{name}: {violation['id']}: {violation['help']}")
        finally:
            browser.close()
    assert problems == []


def test_many_pages_are_made_by_worker_processes_alike(site: Callable[..., Publication]) -> None:
    """Past PARALLEL_FROM pages to render, worker processes make them: the same pages as
    one process makes."""
    from publisher.site.files import PARALLEL_FROM

    config = (
        "site:\n  title: Many\n  url: https://many.example/\n  author: A\nwebsite:\n  per_page: 5\n"
    )
    files = {
        f"articles/a{n:03}.md": f"---\ntitle: A{n}\ndate: 2026-11-01 {n % 24:02}:{n % 60:02}\n"
        f"tags: [t{n % 3}]\n---\nText {n}.\n"
        for n in range(PARALLEL_FROM + 10)
    }
    pub = site(files, config=config)
    report = build(pub, NOW, jobs=2)
    assert report.site is not None and report.site.written > PARALLEL_FROM
    together = {p: (pub.site_dir / p).read_bytes() for p in site_files(pub)}
    for made in ("site", "var"):
        shutil.rmtree(pub.root / made)
    build(pub, NOW, jobs=1)
    assert {p: (pub.site_dir / p).read_bytes() for p in site_files(pub)} == together
    assert "a000/index.html" in together and "tags/t2/page/3/index.html" in together
