"""A private Dovecot IMAP server on 127.0.0.1 for the return-mailbox tests: one user whose
INBOX is a Maildir the test writes into. Needs Debian's dovecot-imapd and root (Dovecot
drops privileges to its own users); .ci/run installs it. Stopped by the fixture.
"""

from __future__ import annotations

import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER, PASSWORD = "returns", "a-mailbox-password-0123"


def available() -> bool:
    try:
        pwd.getpwnam("dovenull")
    except KeyError:
        return False
    return Path(DOVECOT).exists() and Path("/proc/self").stat().st_uid == 0


@contextmanager
def dovecot(port: int) -> Iterator[Path]:
    """Run Dovecot until the block ends; yields the user's Maildir (its INBOX)."""
    folder = Path(tempfile.mkdtemp(prefix="publisher-dovecot-"))
    folder.chmod(0o755)
    nobody = pwd.getpwnam("nobody")
    maildir = folder / "home" / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for path in (folder / "home", *maildir.parent.rglob("*")):
        shutil.chown(path, nobody.pw_uid, nobody.pw_gid)
    (folder / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
    conf = folder / "dovecot.conf"
    conf.write_text(f"""\
protocols = imap
listen = 127.0.0.1
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {folder}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = {folder}/passwd
}}
userdb {{
  driver = static
  args = uid={nobody.pw_uid} gid={nobody.pw_gid} home={folder}/home
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
""")
    process = subprocess.Popen([DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:  # bounded: 20 s for the listener to appear
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    log = folder / "dovecot.log"
                    raise RuntimeError(log.read_text()[-2000:] if log.exists() else "") from None
                time.sleep(0.2)
        yield maildir
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
