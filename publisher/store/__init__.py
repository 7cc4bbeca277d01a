"""The state database, the only package that writes SQL: its tables (``schema``), opening
it (``database``), subscribers and their lists (``lists``). Times are stored as UTC epoch
seconds (REAL): the same on every database, and ordered."""

from publisher.store.database import connect, database_reason, open_database
from publisher.store.lists import (
    Member,
    add_subscriber,
    confirm_subscription,
    count_active,
    find_subscriber,
    lists_of_subscriber,
    members,
    remove_subscriber,
    request_subscription,
    set_lists,
    set_zone,
    unsubscribe_everywhere,
    zone_counts,
    zone_of_subscriber,
    zones_present,
)
from publisher.store.schema import (
    archive,
    deliveries,
    epoch,
    issue_articles,
    issues,
    metadata,
    moment,
    subscribers,
    subscriptions,
)

__all__ = [
    "Member",
    "add_subscriber",
    "archive",
    "confirm_subscription",
    "connect",
    "count_active",
    "database_reason",
    "deliveries",
    "epoch",
    "find_subscriber",
    "issue_articles",
    "issues",
    "lists_of_subscriber",
    "members",
    "metadata",
    "moment",
    "open_database",
    "remove_subscriber",
    "request_subscription",
    "set_lists",
    "set_zone",
    "subscribers",
    "subscriptions",
    "unsubscribe_everywhere",
    "zone_counts",
    "zone_of_subscriber",
    "zones_present",
]
