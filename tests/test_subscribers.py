"""Subscriber lists from the command line: import with bad rows, add, remove, list, export;
send --dry-run and --test; status."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Ran

SECRET = "subscriber-test-secret-0123456789"


@pytest.fixture
def run_cli(cli: Callable[..., Ran], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Ran]:
    """The command line in this process, in ``folder``, with the secret set."""
    monkeypatch.setenv("PUBLISHER_SECRET", SECRET)

    def run(folder: Path, *args: str) -> Ran:
        extra = ["--now", "2026-11-28T12:00:00Z"] if args[0] == "send" else []
        return cli(*args, *extra, cwd=folder)

    return run


def test_import_reports_bad_rows_and_keeps_good_ones(
    example: Path, run_cli: Callable[..., Ran]
) -> None:
    (example / "people.csv").write_text(
        "Name,Email\n"
        "Ann,ann@example.org\n"
        "Bad,not an address\n"
        '"Multi\nline",bob@example.org\n'
        "Worse,x@@example.org\n"
        "Ann again,ANN@example.org\n",
        "utf-8",
    )
    done = run_cli(example, "subscribers", "import", "people.csv", "--list", "weekly")
    assert done.returncode == 1
    assert done.stdout == (
        "weekly: 2 added, 1 already subscribed, 0 left unsubscribed, 0 suppressed, "
        "2 row(s) refused\n"
    )
    lines = done.stderr.splitlines()
    assert lines[0].startswith("people.csv:3: Email: 'not an address': ")
    assert lines[1].startswith("people.csv:6: Email: 'x@@example.org': ")
    listed = json.loads(
        run_cli(example, "subscribers", "list", "--list", "weekly", "--json").stdout
    )
    assert listed == [
        {"email": "ann@example.org", "name": "Ann again", "status": "active", "timezone": None},
        {"email": "bob@example.org", "name": "Multi line", "status": "active", "timezone": None},
    ]


def test_a_row_that_is_not_utf8_is_refused_alone(
    example: Path, run_cli: Callable[..., Ran]
) -> None:
    (example / "old.csv").write_bytes(
        "email,name\nzoe@example.org,Zoë\n".encode()
        + b"l\xe9a@example.org,L\xe9a\n"  # Latin-1, as an old spreadsheet saves it
        + b"max@example.org,Max\n"
    )
    done = run_cli(example, "subscribers", "import", "old.csv", "--list", "weekly")
    assert done.returncode == 1
    assert done.stdout == (
        "weekly: 2 added, 0 already subscribed, 0 left unsubscribed, 0 suppressed, "
        "1 row(s) refused\n"
    )
    assert done.stderr.splitlines() == [
        "old.csv:3: email: not UTF-8: save the file as UTF-8 and import it again (row skipped)"
    ]
    listed = run_cli(example, "subscribers", "list", "--list", "weekly", "--json").stdout
    assert [m["email"] for m in json.loads(listed)] == ["zoe@example.org", "max@example.org"]


def test_an_import_never_subscribes_again_who_unsubscribed_or_bounced(
    example: Path, run_cli: Callable[..., Ran]
) -> None:
    """Consent comes back only from the person: a re-import of an old list (Mailchimp's
    export, here) leaves the unsubscribed unsubscribed and the suppressed unsubscribed,
    says so with each row's line, and the next issue reaches neither."""
    from publisher import store
    from publisher.config import load_config

    for address in ("ann@example.org", "bob@example.org", "cy@example.org"):
        assert run_cli(example, "subscribers", "add", address, "--list", "weekly").returncode == 0
    assert run_cli(example, "subscribers", "remove", "ann@example.org", "--list",
                   "weekly").returncode == 0  # fmt: skip
    pub = load_config(example / "schedule.yaml")
    engine = store.connect(pub.database_url)
    with engine.begin() as db:
        db.execute(store.subscribers.update().where(store.subscribers.c.key == "bob@example.org")
                   .values(suppressed_at=1.0))  # fmt: skip
    engine.dispose()
    (example / "mailchimp.csv").write_text(
        "Email Address,First Name,Last Name\n"
        "ann@example.org,Ann,Example\n"
        "bob@example.org,Bob,\n"
        "cy@example.org,Cy,\n"
        "dee@example.org,Dee,Dot\n",
        "utf-8",
    )
    done = run_cli(example, "subscribers", "import", "mailchimp.csv", "--list", "weekly")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "weekly: 1 added, 1 already subscribed, 1 left unsubscribed, 1 suppressed, "
        "0 row(s) refused\n"
    )
    assert done.stderr.splitlines() == [
        "mailchimp.csv:2: Email Address: ann@example.org unsubscribed from weekly: left "
        "unsubscribed",
        "mailchimp.csv:3: Email Address: bob@example.org is suppressed (it bounced): not "
        "subscribed",
    ]
    listed = json.loads(
        run_cli(example, "subscribers", "list", "--list", "weekly", "--json").stdout
    )
    assert {m["email"]: m["status"] for m in listed} == {
        "ann@example.org": "unsubscribed", "bob@example.org": "suppressed",
        "cy@example.org": "active", "dee@example.org": "active",
    }  # fmt: skip
    assert {m["email"]: m["name"] for m in listed}["dee@example.org"] == "Dee Dot"
    sent = run_cli(example, "send", "weekly")
    assert sent.returncode == 0, sent.stderr
    mailed = [p.read_text() for p in (example / "outbox" / "new").iterdir()]
    assert len(mailed) == 2
    assert not any("ann@example.org" in m or "bob@example.org" in m for m in mailed)


def test_adding_back_who_unsubscribed_needs_their_word(
    example: Path, run_cli: Callable[..., Ran]
) -> None:
    run_cli(example, "subscribers", "add", "ann@example.org", "--list", "weekly")
    run_cli(example, "subscribers", "remove", "ann@example.org", "--list", "weekly")
    refused = run_cli(example, "subscribers", "add", "ann@example.org", "--list", "weekly")
    assert refused.returncode == 1
    assert refused.stderr == (
        "ann@example.org unsubscribed from weekly: left unsubscribed (give --resubscribe if "
        "they asked you to subscribe them again)\n"
    )
    again = run_cli(example, "subscribers", "add", "ann@example.org", "--list", "weekly",
                    "--resubscribe")  # fmt: skip
    assert (again.returncode, again.stdout) == (0, "ann@example.org subscribed to weekly\n")


def test_list_names_follow_the_config_rule(example: Path, run_cli: Callable[..., Ran]) -> None:
    refused = run_cli(example, "subscribers", "add", "a@example.org", "--list", "Big List")
    assert refused.returncode == 2  # a usage error, as argparse reports it
    assert "must be lower-case letters" in refused.stderr
    unused = run_cli(example, "subscribers", "add", "a@example.org", "--list", "later")
    assert unused.returncode == 0
    assert unused.stderr.endswith(
        "schedule.yaml: warning: no digest sends to the list 'later' yet\n"
    )


def test_add_remove_export(example: Path, run_cli: Callable[..., Ran]) -> None:
    added = run_cli(
        example, "subscribers", "add", "Zoe@Exämple.org", "--list", "weekly", "--name", "Zoë"
    )
    assert added.stdout == "Zoe@xn--exmple-cua.org subscribed to weekly\n"  # IDNA domain
    again = run_cli(example, "subscribers", "add", "zoe@exämple.org", "--list", "weekly")
    assert again.stdout.endswith("(no change)\n")
    assert (
        run_cli(example, "subscribers", "remove", "ZOE@exämple.org", "--list", "weekly").returncode
        == 0
    )
    exported = run_cli(example, "subscribers", "export", "--list", "weekly").stdout
    assert exported.splitlines() == [
        "email,name,status,timezone",
        "Zoe@xn--exmple-cua.org,Zoë,unsubscribed,",
    ]
    utf8 = run_cli(example, "subscribers", "add", "zoë@example.org", "--list", "weekly")
    assert (
        utf8.stderr
        == "zoë@example.org: addresses with non-ASCII characters before the @ are not supported\n"
    )
    bad = run_cli(example, "subscribers", "add", "no-at-sign", "--list", "weekly")
    assert bad.returncode == 1 and bad.stderr.startswith("no-at-sign: ")


def test_send_dry_run_test_and_status(example: Path, run_cli: Callable[..., Ran]) -> None:
    for address in ("a@example.org", "b@example.org"):
        run_cli(example, "subscribers", "add", address, "--list", "weekly")
    dry = run_cli(example, "send", "weekly", "--dry-run", "--json")
    assert json.loads(dry.stdout) == {
        "digest": "weekly", "issue": 1, "articles": 10, "waiting": 0, "passed_over": 0,
        "recipients": 2,
        "unfinished": [],
    }  # fmt: skip
    assert not (example / "outbox").exists()
    test = run_cli(example, "send", "weekly", "--test", "me@example.org")
    assert test.returncode == 0, test.stderr
    assert len(list((example / "outbox" / "new").iterdir())) == 1
    status = json.loads(run_cli(example, "status", "--json").stdout)["digests"]
    assert status[0]["issues"] == []  # a test send is not an issue
    real = run_cli(example, "send", "weekly", "--json")
    assert [issue["sent"] for issue in json.loads(real.stdout)["issues"]] == [2]
    status = json.loads(run_cli(example, "status", "--json").stdout)["digests"]
    assert status[0]["subscribers"] == 2
    assert status[0]["issues"][0] | {"window_end": None} == {
        "number": 1, "status": "done", "window_end": None, "sent": 2, "deferred": 0,
        "failed": 0, "pending": 0, "skipped": 0, "sending": 0, "reason": None, "why": [],
        "bounces": {"hard": 0, "soft": 0}, "complaints": 0, "unsubscribes": 0,
        "due_by_hour": [],
    }  # fmt: skip
    text = run_cli(example, "status").stdout
    assert "#1 done: sent 2, deferred 0, failed 0, pending 0, skipped 0" in text


def test_send_needs_the_secret(
    example: Path, run_cli: Callable[..., Ran], cli: Callable[..., Ran]
) -> None:
    run_cli(example, "subscribers", "add", "a@example.org", "--list", "weekly")
    done = cli("send", "weekly", cwd=example, unset=("PUBLISHER_SECRET",))
    assert done.returncode == 1
    assert "set the environment variable PUBLISHER_SECRET" in done.stderr


@pytest.mark.parametrize("command", [("send", "weekly"), ("run", "--once")])
def test_unknown_backend(
    example: Path, command: tuple[str, str], run_cli: Callable[..., Ran]
) -> None:
    config = example / "schedule.yaml"
    config.write_text(config.read_text().replace("type: maildir", "type: carrier-pigeon"))
    done = run_cli(example, *command)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert (
        "backend.type: no backend named 'carrier-pigeon'; installed: console, maildir, memory, smtp"
        in done.stderr
    )


def test_plan_and_next_run(example: Path, run_cli: Callable[..., Ran]) -> None:
    planned = run_cli(example, "plan", "--days", "3", "--json", "--now", "2026-11-28T23:00:00Z")
    jobs = json.loads(planned.stdout)
    weekly = [job for job in jobs if job["job"] == "digest weekly"]
    assert weekly == [
        {
            "job": "digest weekly",
            "local": "2026-11-30T08:00:00+00:00",
            "utc": "2026-11-30T08:00:00+00:00",
        }
    ]
    feeds = sum(job["job"] == "feeds" for job in jobs)
    assert feeds == 3 * 48  # every 30 minutes in (now, now + 3 days]
    status = json.loads(run_cli(example, "status", "--json").stdout)["digests"]
    assert status[0]["next_run"].endswith("08:00:00+00:00")


def test_run_once_sends_the_due_issue_once(example: Path, run_cli: Callable[..., Ran]) -> None:
    run_cli(example, "subscribers", "add", "a@example.org", "--list", "weekly")
    first = run_cli(example, "run", "--once", "--now", "2026-11-28T12:00:00Z")
    assert first.returncode == 0, first.stderr
    assert "weekly #1: done; sent 1" in first.stdout  # catch-up for Monday 23 November
    again = run_cli(example, "run", "--once", "--now", "2026-11-28T13:00:00Z")
    assert "weekly" not in again.stdout and again.returncode == 0
    monday = run_cli(example, "run", "--once", "--now", "2026-11-30T08:01:00Z")
    assert "weekly: nothing new to send" in monday.stdout  # due, but no new article


def test_time_zones_from_a_csv_column_and_the_command_line(
    example: Path, run_cli: Callable[..., Ran]
) -> None:
    (example / "people.csv").write_text(
        "Email,Name,TIMEZONE\n"
        "ann@example.org,Ann,Europe/Berlin\n"
        "bob@example.org,Bob,Mars/Olympus\n"
        "cy@example.org,Cy,\n"
        "di@example.org,Di,america/new_york\n"
        "gus@example.org,Gus,Asia/Calcutta\n",
        "utf-8",
    )
    done = run_cli(example, "subscribers", "import", "people.csv", "--list", "weekly")
    assert done.returncode == 1
    assert done.stderr == (
        "people.csv:3: TIMEZONE: 'Mars/Olympus' is not an IANA time zone (such as "
        "Europe/Berlin) (row skipped)\n"
    )
    added = run_cli(example, "subscribers", "add", "eve@example.org", "--list", "weekly",
                    "--timezone", "Pacific/Chatham")  # fmt: skip
    assert added.returncode == 0
    refused = run_cli(example, "subscribers", "add", "fay@example.org", "--list", "weekly",
                      "--timezone", "Europe/Lyon")  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr == (
        "--timezone: 'Europe/Lyon' is not an IANA time zone (such as Europe/Berlin)\n"
    )
    # An operator sets the zone of one already subscribed.
    run_cli(example, "subscribers", "add", "cy@example.org", "--list", "weekly",
            "--timezone", "Asia/Kolkata")  # fmt: skip
    listed = json.loads(
        run_cli(example, "subscribers", "list", "--list", "weekly", "--json").stdout
    )
    assert {entry["email"]: entry["timezone"] for entry in listed} == {
        "ann@example.org": "Europe/Berlin",
        "cy@example.org": "Asia/Kolkata",
        "di@example.org": "America/New_York",
        "eve@example.org": "Pacific/Chatham",
        "gus@example.org": "Asia/Kolkata",  # an old name is stored by today's
    }
    exported = run_cli(example, "subscribers", "export", "--list", "weekly").stdout
    assert "ann@example.org,Ann,active,Europe/Berlin" in exported.splitlines()


def test_an_old_zone_name_is_stored_by_todays_and_a_countrys_name_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the zone database's default build has it: Asia/Calcutta is an old name of
    Asia/Kolkata; Europe/Oslo keeps Berlin's clock but is still Norway's zone."""
    import zoneinfo

    from publisher import localtime
    from publisher.subscribers import normalize_zone

    (tmp_path / "tzdata.zi").write_text(
        "L Asia/Kolkata Asia/Calcutta\nL Europe/Berlin Europe/Oslo\nL Etc/UTC UTC\n", "utf-8"
    )
    (tmp_path / "zone.tab").write_text(
        "# country code, coordinates, zone\nIN\t+2232+08822\tAsia/Kolkata\n"
        "NO\t+5955+01045\tEurope/Oslo\nDE\t+5230+01322\tEurope/Berlin\tmost of Germany\n",
        "utf-8",
    )
    monkeypatch.setattr(zoneinfo, "TZPATH", (str(tmp_path),))
    localtime._zone_links.cache_clear()
    try:
        assert [normalize_zone(name) for name in ("asia/calcutta", "Europe/Oslo", "UTC")] == [
            "Asia/Kolkata", "Europe/Oslo", "UTC",
        ]  # fmt: skip
    finally:
        localtime._zone_links.cache_clear()
