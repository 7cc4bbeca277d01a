"""The ledger's claims: a claim takes at most its limit, two senders never hold the same
row, a lease that ended makes its rows due again, a release gives back what was not sent,
and consent is read at the claim. On SQLite, and on PostgreSQL (slow)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from publisher import store
from publisher.config import Publication, load_config
from publisher.delivery import Plan, open_issue
from publisher.store import ledger

from .postgres import needs_postgres

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
T = NOW.timestamp()
PEOPLE = 250


def setup(example: Path, database: str | None) -> tuple[Publication, Engine, Plan]:
    config = example / "schedule.yaml"
    if database is not None:
        config.write_text(config.read_text().replace(
            "state:\n  folder: var", f"state:\n  folder: var\n  database: {database}"
        ))  # fmt: skip
    pub = load_config(config)
    engine = store.connect(pub.database_url)
    with engine.begin() as db:
        for n in range(PEOPLE):
            store.add_subscriber(db, f"p{n}@example.org", "", "weekly", 0.0)
    plan = open_issue(engine, pub, pub.config.digests[0], NOW)
    assert plan is not None
    return pub, engine, plan


def claim(engine: Engine, plan: Plan, owner: str, at: float = T, limit: int = 100) -> list[int]:
    with engine.begin() as db:
        rows = ledger.claim(db, plan.issue_id, owner, at, at + 600, limit, "weekly")
    return [row.subscriber_id for row in rows]


def check_claims(example: Path, database: str | None) -> None:
    _, engine, plan = setup(example, database)
    try:
        first, second, third = (claim(engine, plan, name) for name in ("a", "b", "c"))
        assert [len(first), len(second), len(third)] == [100, 100, 50]
        assert not set(first) & set(second) and not set(second) & set(third)
        assert claim(engine, plan, "d") == []  # everything is held
        # b gives back what it did not send; a's lease ends; c records one message.
        with engine.begin() as db:
            assert ledger.release(db, plan.issue_id, "b", T) == 100
            ledger.record(db, plan.issue_id, third[0], "c", "sent", 1, T, T)
            # A sender whose claim has ended records nothing over another's.
            ledger.record(db, plan.issue_id, third[1], "x", "sent", 1, T, T)
        assert sorted(claim(engine, plan, "e", at=T + 10, limit=500)) == sorted(second)
        later = claim(engine, plan, "f", at=T + 601, limit=500)
        assert sorted(later) == sorted(first + third[1:])  # a's and c's leases ended
        with engine.connect() as db:
            counts = ledger.row_counts(db, plan.issue_id)
        assert counts == {"sending": PEOPLE - 1, "sent": 1}
        # Consent is read at the claim: someone unsubscribed meanwhile is skipped.
        with engine.begin() as db:
            ledger.release(db, plan.issue_id, "e", T)
            store.remove_subscriber(db, "p101@example.org", "weekly", T)
        again = claim(engine, plan, "g", limit=500)
        assert 102 not in again and len(again) == 99  # subscriber ids start at 1
        with engine.connect() as db:
            assert ledger.row_counts(db, plan.issue_id)["skipped"] == 1
    finally:
        engine.dispose()


def test_claims_on_sqlite(example: Path) -> None:
    check_claims(example, None)


@pytest.mark.slow
@needs_postgres
def test_claims_on_postgres(example: Path, postgres_url: str) -> None:
    check_claims(example, postgres_url)
