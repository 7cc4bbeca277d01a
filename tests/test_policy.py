"""The retry policy as a pure decision: a reply, and where it came, in; the row's new state
and what the run should do out (no database, no clock)."""

from __future__ import annotations

import pytest

from publisher.backends import DeliveryError
from publisher.backends.base import Stage
from publisher.config.models import DeliverySettings
from publisher.delivery.policy import backoff, decide, enhanced_code

POLICY = DeliverySettings(retry_first=60, retry_max=240, lifetime=3600, hard_bounces=3)
T0 = 1_000_000.0


def reply(
    code: int | None, text: str, stage: Stage = "rcpt", connection: bool = False
) -> DeliveryError:
    permanent = code is not None and code >= 500
    return DeliveryError("step", permanent, code, text, connection, stage)


@pytest.mark.parametrize(("code", "text", "stage"), [
    (550, "5.1.1 no such user", "rcpt"),
    (552, "5.2.2 mailbox full", "rcpt"),
    (553, "bad destination address", "rcpt"),  # no enhanced code: RCPT's own
    (550, "5.1.1 unknown user", "dot"),  # one recipient a transaction: about that one
    (552, "5.2.2 over quota", "data"),
])  # fmt: skip
def test_a_5xx_about_the_recipient_fails_and_bounces(code: int, text: str, stage: Stage) -> None:
    decision = decide(reply(code, text, stage), 1, T0, T0, POLICY)
    assert (decision.status, decision.bounce, decision.pause, decision.slow) == (
        "failed", True, None, False,
    )  # fmt: skip
    assert decision.reply == f"delivery (permanent): step: {code} {text}"


@pytest.mark.parametrize(("code", "text", "stage"), [
    (530, "5.7.0 Authentication required", "mail"),
    (553, "5.1.8 sender address rejected", "mail"),  # an address, but the sender's
    (554, "5.6.0 message content refused", "dot"),
    (554, "transaction failed", "dot"),  # no enhanced code after the dot: the content's
    (554, "5.7.1 relay access denied", "rcpt"),  # policy, even at RCPT
    (550, "5.3.4 message too big for system", "rcpt"),
    (503, "5.5.1 bad sequence of commands", "data"),
    (535, "5.7.8 authentication failed", "connect"),
])  # fmt: skip
def test_a_5xx_about_the_sender_pauses_and_fails_nobody(code: int, text: str, stage: Stage) -> None:
    decision = decide(reply(code, text, stage), 1, T0, T0, POLICY)
    assert decision.status == "requeued" and not decision.bounce
    assert decision.pause is not None and text in decision.pause


@pytest.mark.parametrize(("code", "text"), [
    (450, "4.2.0 greylisted"), (451, "4.7.1 please try again later"),
    (451, "4.3.0 temporary lookup failure"), (452, "4.2.2 mailbox full"),
    (454, "4.7.0 temporary recipient failure"),
])  # fmt: skip
def test_a_4xx_to_rcpt_defers_that_recipient_and_slows_nothing(code: int, text: str) -> None:
    decision = decide(reply(code, text), 1, T0, T0, POLICY)
    assert (decision.status, decision.slow, decision.pause, decision.bounce) == (
        "deferred", False, None, False,
    )  # fmt: skip
    assert decision.due == T0 + 60


@pytest.mark.parametrize(("code", "stage", "connection"), [
    (421, "rcpt", True), (421, "mail", True), (451, "mail", False), (452, "data", False),
    (451, "dot", False), (None, "dot", True), (None, "rcpt", True),
])  # fmt: skip
def test_the_connections_trouble_defers_the_row_and_slows_the_connection(
    code: int | None, stage: Stage, connection: bool
) -> None:
    decision = decide(reply(code, "4.3.2 busy", stage, connection), 1, T0, T0, POLICY)
    assert (decision.status, decision.slow, decision.pause) == ("deferred", True, None)


def test_no_session_at_all_defers_slows_and_counts_towards_unreachable() -> None:
    decision = decide(reply(None, "connection refused", "connect", True), 1, T0, T0, POLICY)
    assert (decision.status, decision.slow, decision.unreachable) == ("deferred", True, True)
    assert decision.pause is None and not decision.bounce


def test_4xx_retries_double_up_to_the_cap_then_expire() -> None:
    delays = []
    for attempt in range(1, 6):
        decision = decide(reply(450, "4.2.0 later"), attempt, T0, T0 + 10 * attempt, POLICY)
        assert decision.status == "deferred" and not decision.bounce
        delays.append(decision.due - (T0 + 10 * attempt))
    assert delays == [60, 120, 240, 240, 240]
    late = decide(reply(450, "4.2.0 later"), 7, T0, T0 + 3601, POLICY)
    assert late.status == "failed" and late.reply.startswith("expired after 7 attempts: ")
    assert not late.bounce


def test_enhanced_codes() -> None:
    assert enhanced_code("5.1.1 no such user") == (5, 1, 1)
    assert enhanced_code(" 4.7.1 later") == (4, 7, 1)
    assert enhanced_code("no code 5.1.1") is None
    assert enhanced_code("5.1 short") is None


def test_the_backoff_doubles_to_a_bound() -> None:
    assert [backoff(n) for n in (1, 2, 3, 7, 8, 50)] == [0.5, 1.0, 2.0, 30.0, 30.0, 30.0]
