"""Delivery: which issue is sent and what is in it (``issues``), its ledger rows claimed
and handed to the backends (``send``), what a failed attempt means for its row
(``policy``, pure), and the sending rate (``rate``)."""

from publisher.delivery.issues import (
    Plan,
    compose,
    issue_articles,
    keep_web_page,
    last_period,
    open_issue,
)
from publisher.delivery.send import (
    Outgoing,
    RunReport,
    Sender,
    deliver,
    send_digest,
    send_waiting,
    waiting_issues,
)

__all__ = [
    "Outgoing",
    "Plan",
    "RunReport",
    "Sender",
    "compose",
    "deliver",
    "issue_articles",
    "keep_web_page",
    "last_period",
    "open_issue",
    "send_digest",
    "send_waiting",
    "waiting_issues",
]
