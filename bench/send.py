"""Benchmark: `publisher send` into Postfix's smtp-sink, against smtp-source on the same
sink, in one run, with the processes pinned to CPUs.

    python3 bench/send.py [--recipients 20000] [--rounds 3] [--big 1000000] [--skip-big]

Needs Debian's postfix package (smtp-sink, smtp-source; the mail system itself need not
run) and taskset (util-linux). Measures, with every figure against references of the same
run:

* **Placements**: the sink on CPU 0, the client (smtp-source, or every process of
  `publisher send`) on CPU 1 ("other CPU") or on CPU 0 too ("same CPU"); and, for the
  sending processes, nothing pinned ("unpinned"). Rounds are interleaved: in each round
  every reference and every configuration runs once, so a slower minute of the machine
  falls on all of them alike; the median of the rounds is reported.
* **References**: ``smtp-source -d -s 1`` (one session, one connection for all messages)
  and ``smtp-source -d -s 16``, with messages of the digest's own size.
* **publisher send** of the example digest (personalized, ~20 KB) to --recipients
  subscribers, ledger on: unsigned and DKIM-signed (RSA-2048), 1, 2 and 4 connections,
  1 and 2 processes. Whole-command msgs/s (start-up and composing included), the
  sending rate (first to last ledger row recorded) and CPU µs per message (user + system
  of the whole process tree).
* **Where the CPU goes**: per message, in this process: rendering (unsigned and signed),
  the DKIM signature alone, a claim and a record per row, and the SMTP exchange alone.
* **A 1,000,000-subscriber issue** (--big) sent to its end, 2 connections, other CPU: the
  rate of every block of 100,000 rows (from the ledger's times) and the peak RSS.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import _tree_rss, fill_list

ROOT = Path(__file__).resolve().parent.parent
NOW = "2026-11-28T12:00:00Z"
ENV = {"PUBLISHER_SECRET": "bench-secret-0123456789abcdef"}
SINK_CPU = "0"
PLACEMENTS = {"other CPU": "1", "same CPU": "0", "unpinned": None}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def publication(
    folder: Path,
    port: int,
    connections: int,
    subscribers: int,
    dkim_key: Path | None = None,
    processes: int | None = None,
) -> None:
    folder.mkdir(parents=True)
    for name in ("articles", "templates"):
        shutil.copytree(ROOT / name, folder / name)
    config = (
        (ROOT / "schedule.yaml")
        .read_text()
        .replace(
            "backend:\n  type: maildir\n  path: outbox",
            f"backend:\n  type: smtp\n  host: 127.0.0.1\n  port: {port}\n  tls: none\n"
            f"  connections: {connections}\n  max_per_connection: 1000000",
        )
    )
    if processes is not None:
        config = config.replace(
            "  hard_bounces: 3\n", f"  hard_bounces: 3\n  processes: {processes}\n"
        )
    if dkim_key is not None:
        config = config.replace(
            "  secret_env: PUBLISHER_SECRET",
            "  secret_env: PUBLISHER_SECRET\n  dkim:\n    domain: kestrelbay.example\n"
            f"    selector: s2026\n    key_file: {dkim_key}\n ",
        )
    (folder / "schedule.yaml").write_text(config)
    # The list is written straight into the database (the benchmark is about sending).
    seed = ["subscribers", "add", "seed@example.org", "--list", "weekly"]
    subprocess.run([sys.executable, "-m", "publisher", *seed], cwd=folder, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    fill_list(folder / "var" / "publisher.db", subscribers)
    # The build cache warm, as `publisher run` leaves it before a digest.
    subprocess.run([sys.executable, "-m", "publisher", "build"], cwd=folder, check=True,
                   stdout=subprocess.DEVNULL, env={**os.environ, **ENV})  # fmt: skip


def pinned(cpu: str | None, command: list[str]) -> list[str]:
    return command if cpu is None else ["taskset", "-c", cpu, *command]


@dataclass
class Sent:
    whole: float  # msgs/s over the whole command
    sending: float  # msgs/s from the first to the last row recorded
    cpu_us: float  # CPU µs per message, the whole process tree


def send_once(folder: Path, cpu: str | None) -> Sent:
    command = pinned(
        cpu, [sys.executable, "-m", "publisher", "send", "weekly", "--now", NOW, "--force"]
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=folder, env={**os.environ, **ENV}, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    db = sqlite3.connect(folder / "var" / "publisher.db")
    first, last, sent = db.execute(
        "SELECT min(updated_at), max(updated_at), count(*) FROM deliveries WHERE status = 'sent'"
    ).fetchone()
    db.close()
    return Sent(sent / seconds, sent / max(last - first, 1e-9), cpu_seconds / sent * 1e6)


def source_once(port: int, cpu: str | None, sessions: int, count: int, size: int) -> float:
    binary = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    command = [binary, "-d", "-s", str(sessions), "-m", str(count), "-l", str(size),
               f"127.0.0.1:{port}"]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(pinned(cpu, command), check=True, stdout=subprocess.DEVNULL)
    return count / (time.perf_counter() - start)


@contextmanager
def sink() -> Iterator[int]:
    binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    process = subprocess.Popen(pinned(SINK_CPU, [binary, *user, f"127.0.0.1:{port}", "1000"]))
    try:
        time.sleep(0.5)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def message_size(folder: Path) -> int:
    out = folder / "preview"
    subprocess.run([sys.executable, "-m", "publisher", "preview", "weekly", "--out", str(out),
                    "--now", NOW], cwd=folder, check=True, env={**os.environ, **ENV},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    return (out / "weekly.eml").stat().st_size


def rsa_key(folder: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = folder / "dkim.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))  # fmt: skip
    return path


# (label, signed, connections, processes) per placement
CONFIGS = {
    "other CPU": [(s, c, 1) for s in (False, True) for c in (1, 2, 4)]
    + [(False, 2, 2), (True, 2, 2)],
    "same CPU": [(s, c, 1) for s in (False, True) for c in (1, 2, 4)],
    "unpinned": [(s, 2, p) for s in (False, True) for p in (1, 2)],
}


def matrix(work: Path, port: int, recipients: int, rounds: int, key: Path) -> None:
    size = 0
    references: dict[tuple[str, int], list[float]] = {}
    results: dict[tuple[str, bool, int, int], list[Sent]] = {}
    for round_number in range(rounds):
        for placement, cpu in PLACEMENTS.items():
            if placement != "unpinned":
                for sessions in (1, 16):
                    if not size:
                        probe = work / "probe"
                        publication(probe, port, 1, 1)
                        size = message_size(probe)
                    rate = source_once(port, cpu, sessions, recipients, size)
                    references.setdefault((placement, sessions), []).append(rate)
            for signed, connections, processes in CONFIGS[placement]:
                folder = work / f"r{round_number}-{placement}-{signed}-{connections}-{processes}"
                publication(folder, port, connections, recipients, key if signed else None,
                            processes)  # fmt: skip
                sent = send_once(folder, cpu)
                results.setdefault((placement, signed, connections, processes), []).append(sent)
                shutil.rmtree(folder)
            print(f"round {round_number + 1}/{rounds}: {placement} done", file=sys.stderr)
    print(f"messages: {size:,} bytes (smtp-source -l {size}); {recipients:,} subscribers; "
          f"{rounds} interleaved rounds, medians")  # fmt: skip
    print("\n| placement | reference | msgs/s |\n|---|---|---|")
    for (placement, sessions), rates in references.items():
        print(f"| {placement} | smtp-source -d -s {sessions} | {statistics.median(rates):,.0f} |")
    print(
        "\n| placement | DKIM | connections | processes | whole command msgs/s | sending "
        "msgs/s | × -s 1 | × -s 16 | CPU µs/msg |\n|---|---|---|---|---|---|---|---|---|"
    )
    for (placement, signed, connections, processes), runs in results.items():
        whole = statistics.median(r.whole for r in runs)
        sending = statistics.median(r.sending for r in runs)
        cpu_us = statistics.median(r.cpu_us for r in runs)
        ref = placement if placement != "unpinned" else "other CPU"
        one = statistics.median(references[(ref, 1)])
        sixteen = statistics.median(references[(ref, 16)])
        print(f"| {placement} | {'RSA-2048' if signed else 'no'} | {connections} | {processes} "
              f"| {whole:,.0f} | {sending:,.0f} | {whole / one:.2f} | {whole / sixteen:.2f} "
              f"| {cpu_us:.0f} |")  # fmt: skip


def breakdown(work: Path, port: int, key: Path) -> None:
    """CPU µs per message of each step, in this process, on the example digest."""
    sys.path.insert(0, str(ROOT))
    os.environ.update(ENV)
    from datetime import datetime

    from publisher import store
    from publisher.backends import Envelope, load_backend
    from publisher.config import load_config
    from publisher.delivery.issues import compose, open_issue
    from publisher.digest.personalize import Recipient
    from publisher.store import ledger
    from publisher.tokens import publication_signer

    folder = work / "breakdown"
    publication(folder, port, 1, 2000, key)
    pub = load_config(folder / "schedule.yaml")
    engine = store.connect(pub.database_url)
    now = datetime.fromisoformat(NOW)
    digest = pub.config.digests[0]
    plan = open_issue(engine, pub, digest, now)
    assert plan is not None
    signed = compose(engine, pub, digest, plan, now, publication_signer(pub))
    unsigned = dataclasses.replace(signed, signing=None)
    people = [Recipient(f"reader{n}@example.org", f"Reader {n}", f"p{n}") for n in range(2000)]

    def per_message(step: object, count: int = 2000) -> float:
        start = time.process_time()
        for n in range(count):
            step(n)  # type: ignore[operator]
        return (time.process_time() - start) / count * 1e6

    rows: list[tuple[str, float]] = []
    rows.append(("render (unsigned)", per_message(lambda n: unsigned.letter(people[n]))))
    rows.append(("render and sign (RSA-2048)", per_message(lambda n: signed.letter(people[n]))))
    messages = [unsigned.letter(p) for p in people]
    assert signed.signing is not None
    rows.append(
        (
            "DKIM signature alone",
            per_message(lambda n: signed.signing[0].sign(messages[n], messages[n].pieces[1])),
        )
    )  # type: ignore[union-attr]
    backend = load_backend("smtp", {"host": "127.0.0.1", "port": port, "tls": "none",
                                    "max_per_connection": 1000000}, str(folder))  # fmt: skip
    with backend:
        rows.append(("SMTP exchange (PIPELINING, one connection)", per_message(
            lambda n: backend.send_message(messages[n], Envelope(
                "bounces@kestrelbay.example", people[n].address, f"<{n}@b>")))))  # fmt: skip
    stamp = now.timestamp()
    with engine.connect() as db:
        start = time.process_time()
        claimed = []
        for _ in range(10):
            with db.begin():
                claimed += ledger.claim(db, plan.issue_id, "bench", stamp, stamp + 600, 200,
                                        "weekly")  # fmt: skip
        rows.append(("claim, per row (batches of 200)",
                     (time.process_time() - start) / max(len(claimed), 1) * 1e6))  # fmt: skip
        start = time.process_time()
        for first in range(0, len(claimed), 100):
            ledger.record_sent(db, plan.issue_id, "bench", [
                (c.subscriber_id, 1, stamp, stamp, "250 2.0.0 Ok: queued as 4ABCDEF")
                for c in claimed[first:first + 100]])  # fmt: skip
            db.commit()
        rows.append(("record sent, per row (100 to a commit)",
                     (time.process_time() - start) / max(len(claimed), 1) * 1e6))  # fmt: skip
    engine.dispose()
    print("\n| step, per message | CPU µs |\n|---|---|")
    for name, micros in rows:
        print(f"| {name} | {micros:.0f} |")


def big_run(work: Path, port: int, count: int) -> None:
    folder = work / "big"
    publication(folder, port, 2, count)
    process = subprocess.Popen(
        pinned(PLACEMENTS["other CPU"],
               [sys.executable, "-m", "publisher", "send", "weekly", "--now", NOW, "--force"]),
        cwd=folder, env={**os.environ, **ENV}, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    peak = 0
    start = time.perf_counter()
    while process.poll() is None:  # bounded: the send ends, or is killed after 3 hours
        peak = max(peak, _tree_rss(process.pid))
        if time.perf_counter() - start > 3 * 3600:
            process.kill()
            raise TimeoutError("the 1,000,000 issue took more than 3 hours")
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    db = sqlite3.connect(folder / "var" / "publisher.db")
    times = [
        t
        for (t,) in db.execute(
            "SELECT updated_at FROM deliveries WHERE status = 'sent' ORDER BY updated_at"
        )
    ]
    db.close()
    block = 100_000
    print(
        f"\n{count:,} subscribers, 2 connections, other CPU: {len(times):,} sent in "
        f"{seconds:.0f} s (composing included); peak RSS {peak / 2**20:.0f} MB"
    )
    print("\n| rows | msgs/s |\n|---|---|")
    rates = []
    for first in range(0, len(times) - 1, block):
        last = min(first + block, len(times) - 1)
        rate = (last - first) / max(times[last] - times[first], 1e-9)
        rates.append(rate)
        print(f"| {first:,}–{last:,} | {rate:,.0f} |")
    if rates:
        print(f"\nlast block / first block: {rates[-1] / rates[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--skip-matrix", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="send-bench-"))
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}")
    try:
        key = rsa_key(work)
        with sink() as port:
            if not args.skip_matrix:
                matrix(work, port, args.recipients, args.rounds, key)
                breakdown(work, port, key)
            if not args.skip_big:
                big_run(work, port, args.big)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
