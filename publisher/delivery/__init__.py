"""Delivery: which issue is sent and what is in it (``issues``), its ledger rows claimed
and handed to the backends (``send``), what a failed attempt means for its row
(``policy``, pure), and the sending rate (``rate``)."""

from publisher.delivery.issues import (
    NextIssue,
    Plan,
    compose,
    compose_next,
    compose_plan,
    keep_web_page,
    last_period,
    next_issue,
    open_issue,
    waiting_articles,
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
    "NextIssue",
    "Outgoing",
    "Plan",
    "RunReport",
    "Sender",
    "compose",
    "compose_next",
    "compose_plan",
    "deliver",
    "keep_web_page",
    "last_period",
    "next_issue",
    "open_issue",
    "send_digest",
    "send_waiting",
    "waiting_articles",
    "waiting_issues",
]
