"""Signed, opaque tokens: one purpose each, tamper-evident, rotatable."""

from __future__ import annotations

import pytest

from publisher.errors import ConfigError
from publisher.tokens import Signer, signer_from_environment

OLD = b"old-key-0123456789abcdef"
NEW = b"new-key-0123456789abcdef"


def test_round_trip_and_purpose() -> None:
    signer = Signer([NEW])
    token = signer.sign("unsubscribe", "s42")
    assert signer.verify("unsubscribe", token) == "s42"
    assert signer.verify("confirm", token) is None  # one salt per purpose


@pytest.mark.parametrize(
    "forged",
    ["s43.AAAAAAAAAAAAAAAAAAAAAA", "s42", "s42.", ".abc", "s42.abc.def", "s 42.x", ""],
)
def test_forged_or_tampered(forged: str) -> None:
    assert Signer([NEW]).verify("unsubscribe", forged) is None


def test_tampered_payload_is_rejected() -> None:
    signer = Signer([NEW])
    _payload, mac = signer.sign("unsubscribe", "s42").split(".")
    assert signer.verify("unsubscribe", f"s43.{mac}") is None


def test_rotation_keeps_old_links_working() -> None:
    old_token = Signer([OLD]).sign("unsubscribe", "s1")
    rotated = Signer([NEW, OLD])
    assert rotated.verify("unsubscribe", old_token) == "s1"
    assert rotated.sign("unsubscribe", "s1") == Signer([NEW]).sign("unsubscribe", "s1")
    assert Signer([NEW]).verify("unsubscribe", old_token) is None


def test_no_address_inside() -> None:
    with pytest.raises(ValueError, match="short id"):
        Signer([NEW]).sign("unsubscribe", "ann@example.org")


def test_secret_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SECRET", f"{NEW.decode()} {OLD.decode()}")
    assert signer_from_environment("TEST_SECRET", "schedule.yaml", 3).keys == (NEW, OLD)
    monkeypatch.setenv("TEST_SECRET", "short")
    with pytest.raises(ConfigError) as caught:
        signer_from_environment("TEST_SECRET", "schedule.yaml", 3)
    assert str(caught.value).startswith(
        "schedule.yaml:3: email.secret_env: set the environment variable TEST_SECRET"
    )
