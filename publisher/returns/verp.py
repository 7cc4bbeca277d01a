"""VERP: each message's envelope sender names its recipient and its issue, so the bounce
that comes back to it says who bounced without trusting what the returned message quotes
(many servers strip or rewrite it).

``bounces@example.org`` becomes ``bounces+<token>@example.org``; the token is signed and
opaque (an issue number and a subscriber's public id, never an address), so a forged
bounce cannot name anybody.
"""

from __future__ import annotations

from publisher.tokens import Signer

PURPOSE = "return"  # the token purpose ("salt") of envelope senders


def envelope_sender(address: str, signer: Signer, issue_id: int, public_id: str) -> str:
    local, domain = address.rsplit("@", 1)
    return f"{local}+{signer.sign(PURPOSE, f'{issue_id:x}-{public_id}')}@{domain}"


def read(token: str, signer: Signer) -> tuple[int, str] | None:
    """(issue id, public id) of a genuine token; None for anything else."""
    payload = signer.verify(PURPOSE, token)
    if payload is None or "-" not in payload:
        return None
    issue, public_id = payload.split("-", 1)
    try:
        return int(issue, 16), public_id
    except ValueError:
        return None
