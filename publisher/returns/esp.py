"""Bounces and complaints that ESPs report over HTTP, each checked to come from the ESP
before it is believed, then made into the same ``Report`` a returned message makes.

* **Amazon SES through SNS** (``/returns/ses``): the SNS message is signed (RSA over its
  fields, SignatureVersion 1: SHA-1, 2: SHA-256) with a certificate that must come from
  ``https://sns.<region>.amazonaws.com/``; its topic must be one of ``ses_topics``. A
  subscription confirmation is confirmed by a GET of its (checked) SubscribeURL.
* **Postmark** (``/returns/postmark``): HTTP basic credentials written into the webhook
  URL at Postmark, compared in constant time.
* **Mailgun** (``/returns/mailgun``): an HMAC-SHA256 of timestamp and token with the
  webhook signing key, at most 5 minutes old.

Anything not proven is ``Forged`` (the web side answers 403 and changes nothing). SES and
Mailgun give the envelope sender of the message, whose VERP token names the recipient.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from typing import Any

from publisher.returns.act import Report
from publisher.returns.classify import Decision, Kind

MAILGUN_MAX_AGE = 300  # seconds
_SNS_HOST = re.compile(r"https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[^?#]*\.pem")
_SNS_SUBSCRIBE = re.compile(r"https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/\?.*")


class Forged(ValueError):
    """The request is not shown to come from the ESP (or is not one of its reports)."""


def verp_token(sender: str, prefix: str) -> str | None:
    local = sender.strip().strip("<>").split("@")[0]
    if local.lower().startswith(prefix.lower() + "+") and len(local) > len(prefix) + 1:
        return local[len(prefix) + 1 :]
    return None


# --- Amazon SES through SNS ---------------------------------------------------------------

_CONFIRMATION = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
_SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": _CONFIRMATION,
    "UnsubscribeConfirmation": _CONFIRMATION,
}


def sns_verified(
    body: bytes, topics: list[str], certificate: Callable[[str], bytes]
) -> dict[str, Any]:
    """The SNS message, once its signature and topic are checked; ``certificate`` gives
    the PEM at a (checked) URL."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    message = _json(body)
    kind = message.get("Type")
    if kind not in _SIGNED or message.get("TopicArn") not in topics:
        raise Forged("not a notification of a configured topic")
    url = str(message.get("SigningCertURL", ""))
    if not _SNS_HOST.fullmatch(url):
        raise Forged("the signing certificate is not Amazon SNS's")
    signed = "".join(
        f"{name}\n{message[name]}\n" for name in _SIGNED[kind] if isinstance(message.get(name), str)
    )
    algorithm: hashes.HashAlgorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(
        str(message.get("SignatureVersion")), hashes.SHA256()
    )
    if str(message.get("SignatureVersion")) not in ("1", "2"):
        raise Forged("an unknown signature version")
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        key = x509.load_pem_x509_certificate(certificate(url)).public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise Forged("not an RSA certificate")
        key.verify(signature, signed.encode(), padding.PKCS1v15(), algorithm)
    except (InvalidSignature, ValueError, binascii.Error) as exc:
        raise Forged("the signature does not match") from exc
    if kind != "Notification" and not _SNS_SUBSCRIBE.fullmatch(str(message.get("SubscribeURL"))):
        raise Forged("the subscription URL is not Amazon SNS's")
    return message


def ses_reports(message: dict[str, Any], prefix: str) -> list[Report]:
    """The bounce or complaint an SES notification carries (one per recipient)."""
    try:
        inner = json.loads(message["Message"])
    except (KeyError, TypeError, ValueError) as exc:
        raise Forged("not an SES notification") from exc
    if not isinstance(inner, dict):
        raise Forged("not an SES notification")
    mail = _dict(inner.get("mail"))
    token = verp_token(str(mail.get("source", "")), prefix)
    original = _our_message_id(mail)
    kind = inner.get("notificationType") or inner.get("eventType")
    reports = []
    if kind == "Bounce":
        bounce = _dict(inner.get("bounce"))
        hard = bounce.get("bounceType") == "Permanent"
        for n, person in enumerate(_list(bounce.get("bouncedRecipients"))):
            address = str(person.get("emailAddress", ""))
            reason = " ".join(str(person.get(k, "")) for k in ("status", "diagnosticCode")).strip()
            decision = Decision(
                "hard" if hard else "soft",
                _one(address),
                token,
                reason or str(bounce.get("bounceSubType", "")),
                original,
            )
            reports.append(Report(_key("ses", message.get("MessageId"), n), "ses", decision))
    elif kind == "Complaint":
        complaint = _dict(inner.get("complaint"))
        for n, person in enumerate(_list(complaint.get("complainedRecipients"))):
            feedback = complaint.get("complaintFeedbackType", "abuse")
            address = str(person.get("emailAddress", ""))
            decision = Decision("complaint", _one(address), token,
                                f"feedback report: {feedback}", original)  # fmt: skip
            reports.append(Report(_key("ses", message.get("MessageId"), n), "ses", decision))
    return reports


# --- Postmark -----------------------------------------------------------------------------

_POSTMARK_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated", "Blocked",
                  "SpamNotification"}  # fmt: skip
_POSTMARK_SOFT = {"SoftBounce", "Transient", "DnsError", "ChallengeVerification",
                  "SMTPApiError", "Unknown"}  # fmt: skip


def postmark_verified(authorization: str | None, credentials: str) -> None:
    given = b""
    if authorization and authorization.lower().startswith("basic "):
        try:
            given = base64.b64decode(authorization[6:].strip(), validate=True)
        except (ValueError, binascii.Error):
            given = b""
    if not given or not hmac.compare_digest(given, credentials.encode()):
        raise Forged("wrong credentials")


def postmark_reports(body: bytes) -> list[Report]:
    event = _json(body)
    record = event.get("RecordType")
    key = _key("postmark", f"{record}:{event.get('ID')}", 0)
    if record == "Bounce":
        kind: Kind = "hard" if event.get("Type") in _POSTMARK_HARD else "soft"
        if event.get("Type") == "AutoResponder" or event.get("Type") not in (
            _POSTMARK_HARD | _POSTMARK_SOFT
        ):
            return []
        reason = " ".join(str(event.get(k) or "") for k in ("Description", "Details")).strip()
        return [Report(key, "postmark", Decision(kind, _one(str(event.get("Email", ""))),
                                                 None, reason))]  # fmt: skip
    if record == "SpamComplaint":
        decision = Decision("complaint", _one(str(event.get("Email", ""))), None,
                            "feedback report: abuse")  # fmt: skip
        return [Report(key, "postmark", decision)]
    if record == "SubscriptionChange" and event.get("SuppressSending") is True:
        address = str(event.get("Recipient", ""))
        reason = f"unsubscribed at Postmark ({event.get('SuppressionReason', '')})"
        return [Report(key, "postmark", Decision("unsubscribe", _one(address), None, reason))]
    return []


# --- Mailgun ------------------------------------------------------------------------------


def mailgun_verified(body: bytes, key: str, now: float) -> dict[str, Any]:
    event = _json(body)
    signature = _dict(event.get("signature"))
    timestamp, token = str(signature.get("timestamp", "")), str(signature.get("token", ""))
    given = str(signature.get("signature", ""))
    wanted = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not given.isascii() or not hmac.compare_digest(given.encode(), wanted.encode()):
        raise Forged("the signature does not match")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > MAILGUN_MAX_AGE:
        raise Forged("too old, or from the future")
    return event


def mailgun_reports(event: dict[str, Any], prefix: str) -> list[Report]:
    data = _dict(event.get("event-data"))
    kind_of = data.get("event")
    envelope = _dict(data.get("envelope"))
    token = verp_token(str(envelope.get("sender", "")), prefix)
    headers = _dict(_dict(data.get("message")).get("headers"))
    found = str(headers.get("message-id", "")).strip()
    original = None if not found else (found if found.startswith("<") else f"<{found}>")
    address = _one(str(data.get("recipient", "")))
    key = _key("mailgun", data.get("id"), 0)
    if kind_of == "failed":
        status = _dict(data.get("delivery-status"))
        kind: Kind = "hard" if data.get("severity") == "permanent" else "soft"
        reason = " ".join(str(status.get(k) or "") for k in ("code", "message", "description"))
        return [Report(key, "mailgun", Decision(kind, address, token, reason.strip(), original))]
    if kind_of == "complained":
        decision = Decision("complaint", address, token, "feedback report: abuse", original)
        return [Report(key, "mailgun", decision)]
    if kind_of == "unsubscribed":
        decision = Decision("unsubscribe", address, None, "unsubscribed at Mailgun")
        return [Report(key, "mailgun", decision)]
    return []


# --- shared -------------------------------------------------------------------------------


def _json(body: bytes) -> dict[str, Any]:
    try:
        found = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Forged("not JSON") from exc
    if not isinstance(found, dict):
        raise Forged("not a JSON object")
    return found


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _one(address: str) -> tuple[str, ...]:
    address = address.strip().strip("<>").lower()
    return (address,) if "@" in address else ()


def _key(source: str, event: Any, n: int) -> str:
    return hashlib.sha256(f"{source}\0{event}\0{n}".encode()).hexdigest()


def _our_message_id(mail: dict[str, Any]) -> str | None:
    common = _dict(mail.get("commonHeaders"))
    found = common.get("messageId")
    for header in _list(mail.get("headers")):
        if str(header.get("name", "")).lower() == "message-id":
            found = header.get("value")
    return found if isinstance(found, str) and found.startswith("<") else None
