"""The retry policy as a pure decision: a reply in, the row's new state out (no database)."""

from __future__ import annotations

import pytest

from publisher.backends import DeliveryError
from publisher.config.models import DeliverySettings
from publisher.delivery.policy import decide, throttle_pause

POLICY = DeliverySettings(retry_first=60, retry_max=240, lifetime=3600, hard_bounces=3)
T0 = 1_000_000.0


def reply(code: int | None, permanent: bool, connection: bool = False) -> DeliveryError:
    return DeliveryError("RCPT TO x@example.org", permanent, code, "said the server", connection)


@pytest.mark.parametrize("code", [550, 552, 553])
def test_a_5xx_about_the_recipient_fails_and_bounces(code: int) -> None:
    decision = decide(reply(code, True), 1, T0, T0, POLICY)
    assert (decision.status, decision.bounce, decision.throttle) == ("failed", True, False)
    assert decision.reply == f"delivery (permanent): RCPT TO x@example.org: {code} said the server"


def test_a_5xx_about_the_connection_is_retried_not_charged_to_the_recipient() -> None:
    decision = decide(reply(535, True, connection=True), 1, T0, T0, POLICY)
    assert (decision.status, decision.bounce) == ("deferred", False)


def test_4xx_retries_double_up_to_the_cap_then_expire() -> None:
    delays = []
    for attempt in range(1, 6):
        decision = decide(reply(450, False), attempt, T0, T0 + 10 * attempt, POLICY)
        assert decision.status == "deferred" and not decision.bounce
        delays.append(decision.due - (T0 + 10 * attempt))
    assert delays == [60, 120, 240, 240, 240]
    late = decide(reply(450, False), 7, T0, T0 + 3601, POLICY)
    assert late.status == "failed" and late.reply.startswith("expired after 7 attempts: ")
    assert not late.bounce


@pytest.mark.parametrize(("code", "connection", "throttle"), [
    (421, True, True), (451, False, True), (454, False, True), (450, False, False),
    (None, True, True),  # a lost connection
])  # fmt: skip
def test_throttling_replies_slow_the_run(
    code: int | None, connection: bool, throttle: bool
) -> None:
    assert decide(reply(code, False, connection), 1, T0, T0, POLICY).throttle is throttle


def test_the_pause_after_throttling_doubles_to_a_bound() -> None:
    assert [throttle_pause(n) for n in (1, 2, 3, 7, 8, 50)] == [0.5, 1.0, 2.0, 30.0, 30.0, 30.0]
