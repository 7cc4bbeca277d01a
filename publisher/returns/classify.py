"""One returned message -> what it means. Pure: bytes in, a ``Decision`` out.

Standard reports are read by their structure: an RFC 5965 feedback report (a complaint),
an RFC 3464 delivery status notification (per recipient: failed with a 5.x.x status is a
hard bounce, delayed or 4.x.x a soft one). The formats from before those standards (Exim,
Exchange, qmail...) are read by flufl.bounce, but only for a message that says it is
from a mail system: an out-of-office reply that quotes "user unknown" is not a bounce.
Auto-replies (RFC 3834 and the usual markers) are recognised as such and change nothing;
a message to the unsubscribe address is an unsubscribe request.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import re
from dataclasses import dataclass, replace
from email.utils import getaddresses, parseaddr
from typing import Literal

Kind = Literal["hard", "soft", "complaint", "unsubscribe", "auto-reply", "unknown"]

_STATUS = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")
_MAIL_SYSTEM = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mdaemon|bounce)", re.I)
_AUTO_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto[- ]?reply|autoreply|auto:|"
    r"abwesenheitsnotiz|absence|vacation|r[ée]ponse automatique)",
    re.I,
)


@dataclass(frozen=True)
class Decision:
    """What a returned message means for whom."""

    kind: Kind
    addresses: tuple[str, ...] = ()  # the recipients it is about, lower-cased
    token: str | None = None  # from the address it came back to (VERP) or its subject
    reason: str = ""  # one line: the status and diagnostic, the feedback type
    # The Message-ID of the message of ours it returns, when it quotes its headers.
    original: str | None = None


def classify(
    raw: bytes, bounce_prefix: str = "bounces", unsubscribe: str | None = None
) -> Decision:
    """Decide what ``raw`` is. ``bounce_prefix``: the local part before the ``+token``
    of the envelope senders (VERP); ``unsubscribe``: the ``mailto:`` unsubscribe address.
    A message the email package itself cannot read is ``unknown``, with why."""
    try:
        return _classify(raw, bounce_prefix, unsubscribe)
    except Exception as exc:  # noqa: BLE001 - hostile input; the reason says what failed
        what = f"not a readable message ({type(exc).__name__}: {_one_line(str(exc))})"
        return Decision("unknown", reason=what)


def _classify(raw: bytes, bounce_prefix: str, unsubscribe: str | None) -> Decision:
    message = email.message_from_bytes(raw)
    decision = _decide(message, raw, bounce_prefix, unsubscribe)
    if decision.kind in ("hard", "soft", "complaint"):
        return replace(decision, original=_original(message))
    return decision


def _decide(
    message: email.message.Message, raw: bytes, bounce_prefix: str, unsubscribe: str | None
) -> Decision:
    token = _token(_returned_to(message), bounce_prefix)
    report = _report_type(message)
    if report == "feedback-report":
        return _complaint(message, token)
    if report == "delivery-status":
        found = _dsn(message, token)
        if found is not None:
            return found
    if _from_mail_system(message):
        found = _legacy_bounce(raw, token)
        if found is not None:
            return found
    if _auto_reply(message):
        return Decision("auto-reply", token=token, reason=_one_line(_h(message, "Subject", "")))
    if unsubscribe is not None and _to_unsubscribe(message, unsubscribe):
        sender = parseaddr(_h(message, "From", ""))[1].lower()
        wanted = _token(_returned_to(message), unsubscribe.split("@")[0]) or _subject_token(
            _h(message, "Subject", "")
        )
        return Decision(
            "unsubscribe", (sender,) if sender else (), wanted, "a mail to the unsubscribe address"
        )
    return Decision("unknown", token=token)


def _report_type(message: email.message.Message) -> str | None:
    if message.get_content_type() != "multipart/report":
        return None
    kind = message.get_param("report-type")
    return kind.lower() if isinstance(kind, str) else None


def _complaint(message: email.message.Message, token: str | None) -> Decision:
    addresses: list[str] = []
    feedback = ""
    for part in message.walk():
        if part.get_content_type() == "message/feedback-report":
            fields = _fields(part)
            feedback = fields.get("feedback-type", "abuse")
            for key in ("original-rcpt-to", "removal-recipient"):
                if fields.get(key):
                    addresses.append(parseaddr(fields[key])[1])
        elif part.get_content_type() in ("message/rfc822", "text/rfc822-headers") and not addresses:
            inner = _inner(part)
            if inner is not None:
                addresses += [a for _, a in getaddresses([str(v) for v in inner.get_all("To", [])])]
    return Decision("complaint", _clean(addresses), token, f"feedback report: {feedback}")


def _dsn(message: email.message.Message, token: str | None) -> Decision | None:
    hard: list[str] = []
    soft: list[str] = []
    reasons: list[str] = []
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        for block in _blocks(part):
            recipient = block.get("final-recipient") or block.get("original-recipient") or ""
            address = recipient.split(";", 1)[-1].strip()
            action = block.get("action", "").lower()
            status = _STATUS.search(block.get("status", ""))
            code = status.group(0) if status else ""
            if action == "failed" and (not code or code.startswith("5")):
                hard.append(address)
            elif action in ("delayed", "failed") or code.startswith("4"):
                soft.append(address)
            else:
                continue  # delivered, relayed, expanded: not a failure
            reasons.append(
                " ".join(filter(None, (code, _one_line(block.get("diagnostic-code", "")))))
            )
    if hard:
        return Decision("hard", _clean(hard), token, reasons[0] if reasons else "")
    if soft:
        return Decision("soft", _clean(soft), token, reasons[0] if reasons else "")
    return None


def _legacy_bounce(raw: bytes, token: str | None) -> Decision | None:
    import logging

    from flufl.bounce import all_failures

    # Its detectors call str methods on headers: parsed with the modern policy, every
    # header is text (with compat32, one with undecodable bytes is a Header object).
    logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)  # what fails is said below
    try:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        temporary, permanent = all_failures(message)
    except Exception as exc:  # noqa: BLE001 - a detector's fault on odd input: this message's
        what = f"not readable as a bounce ({type(exc).__name__}: {_one_line(str(exc))})"
        return Decision("unknown", token=token, reason=what)
    if permanent:
        return Decision("hard", _clean([a.decode("utf-8", "replace") for a in permanent]), token,
                        "a bounce without a delivery status report")  # fmt: skip
    if temporary:
        return Decision("soft", _clean([a.decode("utf-8", "replace") for a in temporary]), token,
                        "a delay warning without a delivery status report")  # fmt: skip
    return None


def _from_mail_system(message: email.message.Message) -> bool:
    sender = parseaddr(_h(message, "From", ""))[1]
    return_path = _h(message, "Return-Path", "").strip()
    return return_path in ("<>", "") and bool(_MAIL_SYSTEM.match(sender.split("@")[0]))


def _auto_reply(message: email.message.Message) -> bool:
    auto = _h(message, "Auto-Submitted", "no").strip().lower()
    if auto and not auto.startswith("no"):
        return True
    if any(message.get(h) for h in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress")):
        return True
    if _h(message, "Precedence", "").strip().lower() in ("auto_reply", "bulk", "junk"):
        return True
    return bool(_AUTO_SUBJECT.match(_h(message, "Subject", "")))


def _to_unsubscribe(message: email.message.Message, address: str) -> bool:
    local, _, domain = address.lower().partition("@")
    for candidate in _returned_to(message):
        mine, _, theirs = candidate.lower().partition("@")
        if theirs == domain and (mine == local or mine.startswith(local + "+")):
            return True
    return False


def _returned_to(message: email.message.Message) -> list[str]:
    """Where the message was delivered: the headers the receiving server adds first."""
    found = []
    for header in ("Delivered-To", "X-Original-To", "Envelope-To", "To"):
        # As written: a VERP token is opaque, and its case is part of it.
        found += [a for _, a in getaddresses([str(v) for v in message.get_all(header, [])]) if a]
    return found


def _token(addresses: list[str], prefix: str) -> str | None:
    for address in addresses:
        local = address.split("@")[0]
        if local.lower().startswith(prefix.lower() + "+"):
            token = local[len(prefix) + 1 :]
            if token:
                return token
    return None


def _subject_token(subject: str) -> str | None:
    match = re.search(r"unsubscribe[ :]+([A-Za-z0-9_.=-]{8,})", subject, re.I)
    return match.group(1) if match else None


def _fields(part: email.message.Message) -> dict[str, str]:
    """The header fields of a report part (its body is header lines)."""
    payload = part.get_payload()
    if isinstance(payload, list):  # parsed as a list of header blocks
        merged: dict[str, str] = {}
        for block in payload:
            if isinstance(block, email.message.Message):
                for key, value in block.items():
                    merged.setdefault(key.lower(), str(value))
        return merged
    text = payload if isinstance(payload, str) else ""
    return {key.lower(): str(value) for key, value in email.message_from_string(text).items()}


def _blocks(part: email.message.Message) -> list[dict[str, str]]:
    """The per-message and per-recipient field blocks of a delivery status."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [
            {k.lower(): str(v) for k, v in block.items()}
            for block in payload
            if isinstance(block, email.message.Message)
        ]
    text = payload if isinstance(payload, str) else ""
    return [
        {k.lower(): str(v) for k, v in email.message_from_string(chunk).items()}
        for chunk in re.split(r"\n\s*\n", text)
        if chunk.strip()
    ]


def _original(message: email.message.Message) -> str | None:
    """The Message-ID of the returned message, from the copy or the headers a report
    includes (never the report's own)."""
    for part in message.walk():
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            inner = _inner(part)
            found = None if inner is None else inner.get("Message-ID")
            if found is not None:
                text = str(found).strip()
                return text[:250] if re.fullmatch(r"<[^<>\s]+>", text) else None
    return None


def _inner(part: email.message.Message) -> email.message.Message | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], email.message.Message):
        return payload[0]
    if isinstance(payload, str):
        return email.message_from_string(payload)
    return None


def _clean(addresses: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a.strip().strip("<>").lower() for a in addresses if "@" in a))


def _h(message: email.message.Message, name: str, default: str = "") -> str:
    # A header with undecodable bytes comes back as a Header object: as text, always.
    value = message.get(name)
    return default if value is None else str(value)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
