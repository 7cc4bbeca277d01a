"""What `publisher send` imports: what it uses, nothing more. Start-up was a third of a
2,000-subscriber send; the scheduler, the web side and the feed writer are not part of a
send."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

NOT_FOR_SEND = {
    "apscheduler.schedulers", "feedgen", "publisher.confirm",
    "publisher.feeds.files", "publisher.scheduler.daemon", "publisher.web", "starlette",
    "uvicorn",
}  # fmt: skip
PROBE = """
import json, sys
from publisher.cli import main
try:
    main(["send", "weekly", "--now", "2026-11-28T12:00:00Z"])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""


def test_send_imports_only_what_it_uses(example: Path) -> None:
    env = {**os.environ, "PUBLISHER_SECRET": "startup-test-secret-0123456789"}

    def publisher(*args: str) -> None:
        subprocess.run([sys.executable, "-m", "publisher", *args], cwd=example, env=env,
                       check=True, capture_output=True, timeout=120)  # fmt: skip

    publisher("subscribers", "add", "a@example.org", "--list", "weekly")
    publisher("build")  # as `publisher run` does before a digest: the build cache is warm
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=example, env=env,
                          capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    assert "weekly #1: done; sent 1" in done.stdout
    modules = set(json.loads(done.stdout.splitlines()[-1]))
    loaded = {m for m in modules if m in NOT_FOR_SEND or m.split(".")[0] in NOT_FOR_SEND}
    assert loaded == set(), done.stderr
