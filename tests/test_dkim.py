"""DKIM signatures made through OpenSSL with the issue's common parts prepared once:
every message verifies with dkimpy (the reference implementation), RSA and Ed25519 alike,
whoever the recipient is; the same message signs to the same bytes; a wrong key is a
clear error with its line."""

from __future__ import annotations

import base64
import email
from collections.abc import Callable
from email import policy
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from publisher import confirm
from publisher.backends.base import Message
from publisher.config import Publication, load_config
from publisher.delivery.issues import Plan
from publisher.digest.issue import Window
from publisher.digest.personalize import Recipient
from publisher.errors import ConfigError
from publisher.tokens import Signer

from .conftest import NOW, Ran
from .test_digest import letters_for

RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ED = ed25519.Ed25519PrivateKey.generate()
RECIPIENTS = [
    Recipient("d@example.org", "Dee", "d1"),
    Recipient("zoe@example.org", "Zoë Ørsted-Ångström, Ph.D. (the long name of a reader)", "z"),
    Recipient(".dot@example.org", ".Leading dot", "p2"),
    Recipient("x" * 60 + "@" + "sub." * 10 + "example.org", "", "p3"),
]


@pytest.fixture
def example_pub(example: Path) -> Publication:
    return load_config(example / "schedule.yaml")


def pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def records() -> dict[bytes, bytes]:
    rsa_public = RSA.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ed_public = ED.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return {
        b"s1._domainkey.kestrelbay.example.": b"v=DKIM1; k=rsa; p=" + base64.b64encode(rsa_public),
        b"e1._domainkey.kestrelbay.example.": b"v=DKIM1; k=ed25519; p="
        + base64.b64encode(ed_public),
    }


def dns(name: bytes, timeout: int = 5) -> bytes:
    return records()[name]


def signed_pub(pub: Publication, monkeypatch: pytest.MonkeyPatch, ed: bool = True) -> Publication:
    monkeypatch.setenv("TEST_DKIM_KEY", pem(RSA))
    monkeypatch.setenv("TEST_DKIM_ED", pem(ED))
    second = "\n    ed25519:\n      selector: e1\n      key_env: TEST_DKIM_ED" if ed else ""
    config = pub.path
    config.write_text(
        config.read_text().replace(
            "  secret_env: PUBLISHER_SECRET",
            "  secret_env: PUBLISHER_SECRET\n  dkim:\n    domain: kestrelbay.example\n"
            "    selector: s1\n    key_env: TEST_DKIM_KEY" + second,
        )
    )
    return load_config(config)


def signatures(data: bytes) -> list[dict[str, str]]:
    message = email.message_from_bytes(data, policy=policy.compat32)
    out = []
    for value in message.get_all("DKIM-Signature") or []:
        tags = "".join(str(value).split())
        out.append(dict(tag.split("=", 1) for tag in tags.split(";") if tag))
    return out


def verify_all(data: bytes) -> None:
    found = signatures(data)
    for index in range(len(found)):
        assert dkim.DKIM(data).verify(idx=index, dnsfunc=dns), found[index]["a"]


def test_every_recipient_verifies_rsa_and_ed25519(
    example_pub: Publication, monkeypatch: pytest.MonkeyPatch
) -> None:
    letters = letters_for(signed_pub(example_pub, monkeypatch))
    for recipient in RECIPIENTS:
        data = letters.render(recipient)
        found = signatures(data)
        assert [s["a"] for s in found] == ["rsa-sha256", "ed25519-sha256"]
        assert all("t" not in s for s in found)  # no timestamp: the same issue, the same bytes
        for tags in found:
            names = tags["h"].lower().split(":")
            for header in ("from", "to", "subject", "date", "message-id",
                           "list-unsubscribe", "list-unsubscribe-post", "content-type"):  # fmt: skip
                assert header in names
            assert names.count("from") == 2  # over-signed: no second From can be added
        verify_all(data)
        head = data.split(b"\r\nFrom: ")[0]
        assert [line for line in head.split(b"\r\n") if len(line) > 78] == []
        # A changed body or To breaks it.
        assert not dkim.verify(data.replace(b"Reader", b"Raeder", 1), dnsfunc=dns) or (
            b"Reader" not in data
        )
        tampered = data.replace(b"\r\nTo: ", b"\r\nTo: evil@example.net, ", 1)
        assert not dkim.verify(tampered, dnsfunc=dns)


def test_signed_message_is_the_same_bytes_each_time(
    example_pub: Publication, monkeypatch: pytest.MonkeyPatch
) -> None:
    pub = signed_pub(example_pub, monkeypatch)
    first = letters_for(pub).render(RECIPIENTS[1])
    assert letters_for(pub).render(RECIPIENTS[1]) == first


def test_data_form_of_a_signed_message_is_its_bytes_dot_stuffed(
    example_pub: Publication, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SMTP DATA pieces are made of the issue's pre-stuffed parts and the recipient's
    own, stuffed alone: they must equal stuffing the whole message."""
    from publisher.backends.base import transparent

    letters = letters_for(signed_pub(example_pub, monkeypatch, ed=False))
    for recipient in RECIPIENTS:
        message = letters.letter(recipient)
        assert b"".join(message.transparent()) == transparent(bytes(message))
        assert b"".join(Message([bytes(message)]).transparent()) == transparent(bytes(message))


def test_confirmation_mails_are_signed(
    example_pub: Publication, monkeypatch: pytest.MonkeyPatch
) -> None:
    pub = signed_pub(example_pub, monkeypatch)
    mail = confirm.mail(pub, confirm_signer(), Plan(1, 1, Window(None, NOW)), NOW)
    for recipient in RECIPIENTS:
        data = mail.render(recipient)
        assert len(signatures(data)) == 2
        verify_all(data)


def confirm_signer() -> Signer:
    return Signer([b"confirm-test-key-0123456789"])


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("not a key", "email.dkim.key_env: not an unencrypted PEM private key"),
        (pem(ED), "email.dkim.key_env: needs an RSA key, this is ed25519-sha256"),
    ],
    ids=["not-a-key", "ed25519-for-rsa"],
)
def test_a_wrong_key_is_a_clear_error(
    example: Path, monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Ran], key: str,
    expected: str,
) -> None:  # fmt: skip
    config = example / "schedule.yaml"
    config.write_text(
        config.read_text().replace(
            "  secret_env: PUBLISHER_SECRET",
            "  secret_env: PUBLISHER_SECRET\n  dkim:\n    domain: kestrelbay.example\n"
            "    selector: s1\n    key_env: TEST_DKIM_KEY",
        )
    )
    monkeypatch.setenv("TEST_DKIM_KEY", key)
    monkeypatch.setenv("PUBLISHER_SECRET", "dkim-test-secret-0123456789")
    done = cli("check", cwd=example)
    assert done.returncode == 1
    assert expected in done.stderr
    assert done.stderr.startswith("schedule.yaml:")
    assert "Traceback" not in done.stderr
    with pytest.raises(ConfigError):
        letters_for(load_config(config))
