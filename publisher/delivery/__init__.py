"""Delivery: an issue's ledger rows, claimed and handed to the backends (``send``), what a
failed attempt means for its row (``policy``, pure), and the sending rate (``rate``)."""

from publisher.delivery.send import (
    Plan,
    RunReport,
    compose,
    deliver,
    issue_articles,
    keep_web_page,
    last_period,
    open_issue,
)

__all__ = [
    "Plan",
    "RunReport",
    "compose",
    "deliver",
    "issue_articles",
    "keep_web_page",
    "last_period",
    "open_issue",
]
