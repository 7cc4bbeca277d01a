"""Sending processes besides this one (``delivery.processes``), when one interpreter is
the bottleneck: DKIM signing, or a server that takes more than one process can give.

Each helper is a process of its own, started fresh (``spawn``: nothing of this process's
threads, sockets or database connections is inherited). It reads schedule.yaml, opens
the database and the backends as ``publisher send`` does, and sends the due rows of the
digest's unfinished issues next to this process. The claims of the ledger keep them
apart, as they keep apart senders on several machines: each row is claimed by one of
them at a time. A helper that dies leaves its claims to the next run, like any sender.
"""

from __future__ import annotations

import os
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from publisher.config import Digest, Publication

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

JOIN_SECONDS = 3600.0  # a helper still sending after the main process has stopped
AUTO_ROWS = 2000  # below this, a helper's start (~0.5 s) costs more than it brings


def wanted(pub: Publication, due_rows: int) -> int:
    """How many helpers to start for ``due_rows`` rows (``delivery.processes`` less this
    process)."""
    processes = pub.config.delivery.processes
    if processes == "auto":
        signed = pub.config.email.dkim is not None
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        processes = 2 if signed and cores >= 2 and due_rows >= AUTO_ROWS else 1
    return max(0, min(int(processes), due_rows) - 1)


def start(pub: Publication, digest: Digest, now: datetime, count: int) -> list[BaseProcess]:
    """``count`` helpers sending the due rows of ``digest``'s unfinished issues."""
    import multiprocessing  # only when a helper is wanted

    context = multiprocessing.get_context("spawn")
    helpers: list[BaseProcess] = []
    for _ in range(count):
        process = context.Process(
            target=_helper, args=(str(pub.path), digest.name, now.isoformat()), daemon=True
        )
        process.start()
        helpers.append(process)
    return helpers


def stop(helpers: list[BaseProcess], early: bool) -> list[int]:
    """Wait for the helpers (asked to stop first when ``early``: this process was told
    to stop); their exit codes."""
    for process in helpers:
        if early and process.pid is not None and process.is_alive():
            process.terminate()  # SIGTERM: the helper hands over nothing new, records all
    for process in helpers:
        process.join(timeout=JOIN_SECONDS)
    return [process.exitcode if process.exitcode is not None else -1 for process in helpers]


def _helper(config: str, digest_name: str, now: str) -> None:
    from publisher import store
    from publisher.backends import backend_pool
    from publisher.config import load_config
    from publisher.delivery.send import Sender, send_waiting
    from publisher.errors import PublisherError
    from publisher.tokens import publication_signer

    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        pub = load_config(Path(config))
        engine = store.open_database(pub)
        try:
            sender = Sender(engine, pub, backend_pool(pub), should_stop=lambda: stopping)
            send_waiting(sender, pub.digest(digest_name), datetime.fromisoformat(now),
                         publication_signer(pub))  # fmt: skip
        finally:
            engine.dispose()
    except PublisherError as exc:
        print(f"publisher: sending process: {exc}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - one line for the operator, as the CLI does
        # multiprocessing would print the traceback; its claims come back as any
        # dead sender's do.
        print(f"publisher: sending process: internal error: {type(exc).__name__}: {exc}",
              file=sys.stderr)  # fmt: skip
        sys.exit(1)
