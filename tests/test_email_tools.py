"""The example digest judged by real tools: SpamAssassin scores it (and the confirmation
mail of the web side), Chromium lays it out.

Marked slow: they need Debian's spamassassin and chromium, which .ci/run installs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from publisher.config import load_config
from publisher.digest.personalize import Recipient

from .test_digest import letters_for

pytestmark = pytest.mark.slow
SCREENSHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"


@pytest.fixture
def message(example: Path) -> bytes:
    return letters_for(load_config(example / "schedule.yaml")).render(
        Recipient("sam@example.com", "Sam Example", "s1")
    )


def confirmation(example: Path) -> bytes:
    """The double opt-in mail of the web side."""
    from datetime import UTC, datetime

    from publisher import confirm
    from publisher.delivery import Plan
    from publisher.digest.issue import Window
    from publisher.tokens import Signer

    pub = load_config(example / "schedule.yaml")
    when = datetime(2026, 11, 28, 12, tzinfo=UTC)
    mail = confirm.mail(
        pub, Signer([b"spam-test-key-0123456789"]), Plan(1, 1, Window(None, when)), when
    )
    return mail.render(Recipient("sam@example.com", "Sam Example", "s1"))


@pytest.mark.skipif(shutil.which("spamassassin") is None, reason="spamassassin not installed")
@pytest.mark.parametrize("kind", ["digest", "confirmation"])
def test_spamassassin_scores_below_two(
    kind: str, message: bytes, example: Path, tmp_path: Path
) -> None:
    done = subprocess.run(
        # -L: local tests only (no DNS blocklists: this machine has no network), -t: report
        ["spamassassin", "-x", "-L", "-t"],
        input=message if kind == "digest" else confirmation(example),
        capture_output=True,
        timeout=300,
        check=True,
    )
    status = re.search(rb"X-Spam-Status: \w+, score=(-?[\d.]+)", done.stdout)
    assert status is not None, done.stdout[:2000]
    assert float(status.group(1)) < 2.0, done.stdout.split(b"\n\n")[0].decode(errors="replace")


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    # Nothing leaves the machine: every host name fails to resolve.
    "--host-resolver-rules=MAP * ~NOTFOUND",
]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
@pytest.mark.parametrize("width", [375, 800])
def test_chromium_renders_without_horizontal_overflow(
    message: bytes, tmp_path: Path, width: int
) -> None:
    import email
    from email import policy

    parsed = email.message_from_bytes(message, policy=policy.default)
    html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
    # The window cannot be made narrower than ~500 px, an iframe can: the email is laid
    # out in an iframe exactly `width` wide, and the page reports what the iframe saw.
    page = tmp_path / "probe.html"
    source = json.dumps(html).replace("</", "<\\/")
    page.write_text(
        "<!doctype html><html><body style='margin:0'>"
        f"<iframe id='f' style='width:{width}px;height:600px;border:0'></iframe><script>"
        "var f = document.getElementById('f'); f.onload = function () {"
        "var d = f.contentDocument; document.body.setAttribute('data-probe', JSON.stringify({"
        "inner: f.contentWindow.innerWidth,"
        "scroll: Math.max(d.documentElement.scrollWidth, d.body.scrollWidth)}));};"
        f"f.srcdoc = {source};</script></body></html>",
        "utf-8",
    )
    profile = tmp_path / "profile"
    base = ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    dom = subprocess.run(
        [*base, f"--window-size={width + 50},900", "--virtual-time-budget=5000", "--dump-dom",
         page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    found = re.search(r'data-probe="([^"]+)"', dom)
    assert found is not None, dom[:500]
    probe = json.loads(found.group(1).replace("&quot;", '"'))
    assert probe["inner"] == width
    assert probe["scroll"] <= width, f"content is {probe['scroll']} px wide at {width} px"
    email_page = tmp_path / "digest.html"
    email_page.write_text(html, "utf-8")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    target = SCREENSHOTS / f"digest-{width}.png"
    subprocess.run(
        [*base, f"--window-size={max(width, 500)},2000", f"--screenshot={target}",
         email_page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    assert target.stat().st_size > 10_000
