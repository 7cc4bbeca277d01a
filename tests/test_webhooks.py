"""The ESPs' webhooks on a real server: a signed report changes the subscriber it names;
a forged, altered, stale or unauthenticated one is answered 4xx and changes nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from publisher import store
from publisher.backends.memory import MemoryBackend
from publisher.config import Publication, load_config
from publisher.returns import verp

from .conftest import NOW
from .sending import send
from .test_bounces import states
from .test_web import KEY, serving

TOPIC = "arn:aws:sns:eu-west-1:123456789012:bounces"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem"
POSTMARK = "hook:a-postmark-password-0123"
MAILGUN = "key-mailgun-signing-0123456789"
PEOPLE = ("ann", "bob", "cat", "dan")

WEBHOOKS = f"""\
  webhooks:
    ses_topics: ["{TOPIC}"]
    postmark_auth_env: TEST_POSTMARK_AUTH
    mailgun_key_env: TEST_MAILGUN_KEY
"""


@pytest.fixture
def hooked(
    example: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Publication, rsa.RSAPrivateKey]]:
    monkeypatch.setenv("TEST_POSTMARK_AUTH", POSTMARK)
    monkeypatch.setenv("TEST_MAILGUN_KEY", MAILGUN)
    config = example / "schedule.yaml"
    config.write_text(config.read_text() + WEBHOOKS)
    pub = load_config(config)
    engine = store.connect(pub.database_url)
    with engine.begin() as db:
        for name in PEOPLE:
            store.add_subscriber(db, f"{name}@example.org", name, "weekly", 0.0)
    engine.dispose()
    assert send(pub, [MemoryBackend({}, str(pub.root))], NOW, signer=KEY)[0].sent == 4
    # The SNS signing certificate, as a fetch of CERT_URL would have kept it.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    start = datetime(2026, 1, 1, tzinfo=UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(start).not_valid_after(start + timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    kept = pub.state_dir / "sns-certificates"
    kept.mkdir(parents=True)
    (kept / f"{hashlib.sha256(CERT_URL.encode()).hexdigest()}.pem").write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
    )
    with serving(pub) as base:
        yield base, pub, key


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, body, {"Content-Type": "application/json",
                                                 **(headers or {})})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def envelope(pub: Publication, name: str) -> str:
    """The VERP envelope sender the issue went out with to ``name``."""
    engine = store.connect(pub.database_url)
    with engine.connect() as db:
        public_id = db.execute(
            select(store.subscribers.c.public_id)
            .where(store.subscribers.c.key == f"{name}@example.org")
        ).scalar_one()  # fmt: skip
    engine.dispose()
    return verp.envelope_sender("bounces@kestrelbay.example", KEY, 1, public_id)


def sns(key: rsa.RSAPrivateKey, inner: dict[str, Any], message_id: str, **changes: str) -> bytes:
    message = {
        "Type": "Notification", "MessageId": message_id, "TopicArn": TOPIC,
        "Message": json.dumps(inner), "Timestamp": "2026-11-28T13:00:00.000Z",
        "SignatureVersion": "2", "SigningCertURL": CERT_URL,
    }  # fmt: skip
    signed = "".join(
        f"{k}\n{message[k]}\n" for k in ("Message", "MessageId", "Timestamp", "TopicArn", "Type")
    )
    signature = key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
    message["Signature"] = base64.b64encode(signature).decode()
    message.update(changes)  # after signing: what a forger changes
    return json.dumps(message).encode()


def ses_bounce(pub: Publication, name: str) -> dict[str, Any]:
    return {
        "notificationType": "Bounce",
        "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "bouncedRecipients": [
            {"emailAddress": f"{name}@example.org", "status": "5.1.1",
             "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]},
        "mail": {"source": envelope(pub, name), "messageId": "0100-ses-id"},
    }  # fmt: skip


def test_ses_through_sns_signed_acts_forged_does_not(
    hooked: tuple[str, Publication, rsa.RSAPrivateKey],
) -> None:
    base, pub, key = hooked
    before = states(pub)
    url = f"{base}/returns/ses"
    forged_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for body in (
        sns(forged_key, ses_bounce(pub, "bob"), "m-forged"),  # signed with another key
        sns(key, ses_bounce(pub, "bob"), "m1", Message=json.dumps(ses_bounce(pub, "ann"))),
        sns(key, ses_bounce(pub, "bob"), "m1", TopicArn="arn:aws:sns:eu-west-1:1:other"),
        sns(key, ses_bounce(pub, "bob"), "m1",
            SigningCertURL="https://sns.evil.example/cert.pem"),
        b"not json",
    ):  # fmt: skip
        status, _ = post(url, body)
        assert status == 403
    assert states(pub) == before

    genuine = sns(key, ses_bounce(pub, "bob"), "m1")
    assert post(url, genuine) == (200, {"reports": 1, "acted": 1})
    complaint = {
        "notificationType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": "cat@example.org"}],
                      "complaintFeedbackType": "abuse"},
        "mail": {"source": envelope(pub, "cat")},
    }  # fmt: skip
    assert post(url, sns(key, complaint, "m2")) == (200, {"reports": 1, "acted": 1})
    assert post(url, genuine) == (200, {"reports": 1, "acted": 0})  # a repeat: once
    after = states(pub)
    assert after["bob@example.org"] == ("active", 1, False)
    assert after["cat@example.org"] == ("unsubscribed", 0, False)
    assert {k: v for k, v in after.items() if k[:3] not in ("bob", "cat")} == {
        k: v for k, v in before.items() if k[:3] not in ("bob", "cat")
    }


def test_postmark_with_its_credentials_acts_without_them_does_not(
    hooked: tuple[str, Publication, rsa.RSAPrivateKey],
) -> None:
    base, pub, _ = hooked
    before = states(pub)
    url = f"{base}/returns/postmark"
    event = json.dumps(
        {
            "RecordType": "Bounce",
            "ID": 42,
            "Type": "HardBounce",
            "Email": "dan@example.org",
            "Description": "The server was unable to deliver your message",
            "Details": "550 5.1.1 unknown",
        }
    ).encode()
    wrong = base64.b64encode(b"hook:guess").decode()
    assert post(url, event)[0] == 403
    assert post(url, event, {"Authorization": f"Basic {wrong}"})[0] == 403
    assert post(url, event, {"Authorization": "Basic !!!"})[0] == 403
    assert states(pub) == before
    right = base64.b64encode(POSTMARK.encode()).decode()
    assert post(url, event, {"Authorization": f"Basic {right}"}) == (
        200,
        {"reports": 1, "acted": 1},
    )
    assert states(pub)["dan@example.org"] == ("active", 1, False)


def test_mailgun_signed_acts_forged_or_stale_does_not(
    hooked: tuple[str, Publication, rsa.RSAPrivateKey],
) -> None:
    base, pub, _ = hooked
    before = states(pub)
    url = f"{base}/returns/mailgun"

    def event(stamp: int, key: str = MAILGUN) -> bytes:
        token = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5"
        signature = hmac.new(key.encode(), f"{stamp}{token}".encode(), "sha256").hexdigest()
        return json.dumps({
            "signature": {"timestamp": str(stamp), "token": token, "signature": signature},
            "event-data": {"event": "failed", "severity": "permanent", "id": "ev-1",
                           "recipient": "ann@example.org",
                           "envelope": {"sender": envelope(pub, "ann")},
                           "delivery-status": {"code": 550, "message": "5.1.1 no such user"}},
        }).encode()  # fmt: skip

    now = int(time.time())  # Mailgun's own check is against the clock: a stale one is refused
    assert post(url, event(now, "another-key-0123456789"))[0] == 403
    assert post(url, event(now - 3600))[0] == 403
    assert states(pub) == before
    assert post(url, event(now)) == (200, {"reports": 1, "acted": 1})
    assert states(pub)["ann@example.org"] == ("active", 1, False)


def test_a_webhook_not_configured_is_not_found(example: Path) -> None:
    pub = load_config(example / "schedule.yaml")
    with serving(pub) as base:
        for esp in ("ses", "postmark", "mailgun"):
            assert post(f"{base}/returns/{esp}", b"{}")[0] == 404
