"""A private Postfix on 127.0.0.1 for end-to-end tests: accepts mail for any address into
one Maildir, and answers recipients named tempfail* with 451 and reject* with 550. Those
named gone* it accepts and then bounces, as a relay does when the mailbox behind it is
gone: the DSN goes to the envelope sender, and one to bounces+*@ lands in the Maildir
``Returns`` beside the other.

Needs Debian's postfix and root (Postfix drops privileges to its own users); .ci/run
installs it. Everything lives in a temporary folder and is stopped by the fixture.
"""

from __future__ import annotations

import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"

SERVICES = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
proxymap unix - - n - - proxymap
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
virtual unix - n n - - virtual
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


def available() -> bool:
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return False
    return Path(POSTFIX).exists() and Path("/proc/self").stat().st_uid == 0


@contextmanager
def postfix(port: int, discard: bool = False) -> Iterator[Path]:
    """Run Postfix until the block ends; yields the Maildir it delivers into (with
    ``discard``, accepted mail is thrown away after queueing: for benchmarks)."""
    # Postfix's own users must reach the folder, so it is not below pytest's private
    # (0700) temporary folder.
    folder = Path(tempfile.mkdtemp(prefix="publisher-postfix-"))
    try:
        with _running(folder, port, discard) as maildir:
            yield maildir
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _running(folder: Path, port: int, discard: bool) -> Iterator[Path]:
    folder.chmod(0o755)
    conf, spool, data, maildir = (folder / n for n in ("etc", "spool", "data", "Maildir"))
    for path in (conf, spool, data, maildir / "new", maildir / "cur", maildir / "tmp"):
        path.mkdir(parents=True, exist_ok=True)
    nobody = pwd.getpwnam("nobody")
    postfix_user = pwd.getpwnam("postfix")
    for path in (maildir, maildir / "new", maildir / "cur", maildir / "tmp"):
        shutil.chown(path, nobody.pw_uid, nobody.pw_gid)
    shutil.chown(data, postfix_user.pw_uid)
    (conf / "recipients").write_text(
        "/^tempfail[^@]*@/ 451 4.3.0 try again later\n/^reject[^@]*@/ 550 5.1.1 no such user\n"
    )
    (conf / "transport").write_text("/^gone[^@]*@/ error:5.1.1 mailbox unavailable\n")
    (conf / "mailboxes").write_text("/^bounces\\+[^@]*@/ Returns/\n/./ Maildir/\n")
    returns = folder / "Returns"
    for path in (returns, returns / "new", returns / "cur", returns / "tmp"):
        path.mkdir(parents=True, exist_ok=True)
        shutil.chown(path, nobody.pw_uid, nobody.pw_gid)
    (conf / "main.cf").write_text(
        f"""\
compatibility_level = 3.6
queue_directory = {spool}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = sink.test.invalid
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
smtp_dns_support_level = disabled
virtual_mailbox_domains = static:all
virtual_mailbox_base = {folder}
virtual_mailbox_maps = regexp:{conf}/mailboxes
transport_maps = regexp:{conf}/transport
# Accepted at RCPT, bounced after: the error transport of gone* is not looked at then.
smtpd_reject_unlisted_recipient = no
virtual_uid_maps = static:{nobody.pw_uid}
virtual_gid_maps = static:{nobody.pw_gid}
default_transport = error:5.7.1 relays nothing
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = check_recipient_access regexp:{conf}/recipients, permit_mynetworks, reject
maillog_file = {folder}/maillog
# Postfix writes its log only below allowed prefixes; allow the test folder.
maillog_file_prefixes = {folder}
"""
        + ("virtual_transport = discard\n" if discard else "")
    )
    (conf / "master.cf").write_text(SERVICES.format(port=port))
    subprocess.run([POSTFIX, "-c", str(conf), "start"], check=True, capture_output=True, timeout=60)
    try:
        deadline = time.monotonic() + 20
        while True:  # bounded: 20 s for the listener to appear
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError((folder / "maillog").read_text()[-2000:]) from None
                time.sleep(0.2)
        yield maildir
    finally:
        subprocess.run(
            [POSTFIX, "-c", str(conf), "stop"], check=False, capture_output=True, timeout=60
        )


def wait_for_files(folder: Path, count: int, seconds: float = 30) -> list[Path]:
    deadline = time.monotonic() + seconds
    while True:  # bounded by `seconds`
        found = sorted(folder.iterdir())
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def answer_everyone(maildir: Path) -> None:
    """From now on the Postfix of ``maildir`` accepts every recipient, as a greylister
    accepts the second try: its recipient map is emptied and the smtpd processes that
    read it are restarted."""
    conf = maildir.parent / "etc"
    (conf / "recipients").write_text("")
    subprocess.run([POSTFIX, "-c", str(conf), "reload"], check=True, capture_output=True,
                   timeout=60)  # fmt: skip
