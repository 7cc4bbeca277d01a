"""The state database (SQLAlchemy Core): subscribers and their lists, digest issues, and the
delivery ledger — one row per (issue, recipient).

SQLite in WAL mode by default (embedded, nothing to install); any SQLAlchemy URL, such as
PostgreSQL, works too. Times are stored as UTC epoch seconds (REAL): the same on every
database, and ordered.

These tables are what the queries use; the database is made and changed only by the
migrations in ``migrations/`` (``store.migrate``), and a test holds the two equal.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True),
    # The address as validated; `key` (lower-cased) makes Ann@X and ann@x one subscriber.
    Column("address", String(254), nullable=False),
    Column("key", String(254), nullable=False, unique=True),
    Column("name", String(200), nullable=False, default=""),
    # What tokens carry instead of the address.
    Column("public_id", String(32), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("hard_bounces", Integer, nullable=False, default=0),
    Column("suppressed_at", Float),
    Column("suppressed_reason", String(1000)),
    # When the last confirmation mail went out: repeated sign-ups do not spam the address.
    Column("confirm_sent_at", Float),
    # Their IANA time zone (None: the digest's own): a `deliver_at: local` digest reaches
    # them at its hour there, and quiet hours are theirs.
    Column("timezone", String(64)),
    # Which zones subscribers have, found in a few hundred index steps, not a scan.
    Index("subscribers_timezone", "timezone"),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("subscriber_id", ForeignKey("subscribers.id"), primary_key=True),
    Column("list", String(64), primary_key=True),
    Column("status", String(16), nullable=False),  # active | unsubscribed
    Column("updated_at", Float, nullable=False),
)

issues = Table(
    "issues",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("number", Integer, nullable=False),
    Column("window_start", Float),
    Column("window_end", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("status", String(16), nullable=False),  # sending | paused | done
    # Why a paused issue is paused: the reply about the sender or the server that stopped it.
    Column("paused_reason", String(1000)),
    Column("paused_at", Float),  # a paused issue is tried again retry_first after this
    # Failed attempts in a row over every sender of the issue: pause_after pauses it.
    Column("failures_in_a_row", Integer, nullable=False, server_default="0"),
    # The scheduled moment the issue is for (None when sent by hand).
    Column("period", Float),
    # An issue sent before the ledger recorded articles (chosen by a date window): every
    # article dated up to this moment counts as sent by its digest. None for the others,
    # whose articles are in issue_articles.
    Column("articles_until", Float),
    # Its subject, kept with its web page: what the archive lists (None before 0004).
    Column("subject", String(250)),
    # One issue per number per digest, whoever composes it (two schedulers included).
    UniqueConstraint("digest", "number"),
    # And one issue per scheduled period.
    Index("issues_period", "digest", "period", unique=True),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("issue_id", ForeignKey("issues.id"), primary_key=True),
    Column("subscriber_id", ForeignKey("subscribers.id"), primary_key=True),
    # pending | sending (claimed) | deferred | sent | failed | skipped
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False, default=0.0),
    Column("first_attempt_at", Float),
    Column("code", Integer),
    Column("reply", String(1000)),
    Column("provider_id", String(200)),
    Column("updated_at", Float),
    # The sender holding a `sending` row; its lease ends at next_attempt_at, after which
    # the row is due again (its sender was killed).
    Column("lease_owner", String(64)),
    Index("deliveries_due", "issue_id", "status", "next_attempt_at"),
    Index("deliveries_sent_at", "status", "updated_at"),
)


issue_articles = Table(
    "issue_articles",
    metadata,
    # What an issue holds, recorded when it is composed: the next issue of the digest takes
    # the published articles none of its issues has (a late or backdated file included),
    # and an edited article is not sent again.
    Column("issue_id", ForeignKey("issues.id"), primary_key=True),
    Column("slug", Text, primary_key=True),
    Column("position", Integer, nullable=False),  # its place in the issue, from 0
    # 1: in the issue; 0: passed over (more than max_articles, with overflow: drop).
    Column("included", Integer, nullable=False),
)


archive = Table(
    "archive",
    metadata,
    # The issue as a web page ("view in browser"), kept when it is first composed: the
    # archive shows what was sent, even after an article is edited.
    Column("issue_id", ForeignKey("issues.id"), primary_key=True),
    Column("html", Text, nullable=False),
)


sources = Table(
    "sources",
    metadata,
    # What the last fetches of each upstream feed (schedule.yaml's sources:) found.
    Column("name", String(64), primary_key=True),
    # Where it is fetched from: the configured URL, or where a permanent redirect led.
    Column("url", Text, nullable=False),
    Column("configured_url", Text, nullable=False),  # a new one in schedule.yaml starts over
    Column("etag", String(1000)),  # for a conditional GET: a 304 costs nothing
    Column("last_modified", String(200)),
    Column("fetched_at", Float),  # the last attempt
    Column("status", Integer),  # its HTTP status (None: no answer at all)
    Column("error", String(1000)),  # what went wrong, None when it worked
    Column("new_entries", Integer, nullable=False, server_default="0"),  # in the last fetch
    Column("held", Integer, nullable=False, server_default="0"),  # entries held back
    Column("next_fetch_at", Float, nullable=False, server_default="0"),
    Column("failures", Integer, nullable=False, server_default="0"),  # in a row: backoff
    Column("gone_at", Float),  # 410 Gone: not fetched again
)

source_entries = Table(
    "source_entries",
    metadata,
    # Every entry ever seen in a source: the first sight of its identity is what makes it
    # new, so an entry is sent once, whatever the feed does later.
    Column("source", String(64), primary_key=True),
    # SHA-256 of its id (guid), else of its link, else of its title and link.
    Column("identity", String(64), primary_key=True),
    # SHA-256 of its link and title: an entry whose id changed but not these is not new.
    Column("sameness", String(64), nullable=False),
    Column("first_seen", Float, nullable=False),
    # 1: one of a flood of unseen entries, not published until the operator releases it.
    Column("held", Integer, nullable=False),
    # The entry as the feed gave it, as JSON (title, link, dates, tags, HTML, its base):
    # made into an article, through the sanitizer, at each build.
    Column("data", Text, nullable=False),
    Index("source_entries_sameness", "source", "sameness"),
)


returns = Table(
    "returns",
    metadata,
    # Every returned message and ESP report acted on, once: a bounce, a complaint, a
    # mailed unsubscribe. What status counts per issue, and what soft bounces are
    # counted from.
    Column("id", Integer, primary_key=True),
    # SHA-256 of the message (or the ESP's event id): read twice, acted on once.
    Column("key", String(64), nullable=False, unique=True),
    Column("received_at", Float, nullable=False),
    Column("source", String(16), nullable=False),  # mailbox | ses | postmark | mailgun
    Column("kind", String(16), nullable=False),  # hard | soft | complaint | unsubscribe
    Column("subscriber_id", ForeignKey("subscribers.id")),  # None: nobody of ours
    Column("issue_id", ForeignKey("issues.id")),  # None: no issue could be told
    Column("reason", String(1000), nullable=False),
    Index("returns_issue", "issue_id", "kind"),
    Index("returns_subscriber", "subscriber_id", "kind", "received_at"),
)

holds = Table(
    "holds",
    metadata,
    # A digest that passed returns.complaint_rate or bounce_rate: nothing of it is sent
    # until the operator resumes it (publisher bounces resume DIGEST).
    Column("digest", String(64), primary_key=True),
    Column("reason", String(1000), nullable=False),
    Column("held_at", Float, nullable=False),
)

delivery_tasks = Table(
    "delivery_tasks",
    metadata,
    # Each task placed for the Celery workers (workers: in schedule.yaml): "send up to a
    # batch of the due rows of this issue". The claims of the ledger decide who is sent;
    # this says what is queued, which worker took what and what came of it (status).
    Column("id", String(64), primary_key=True),  # the task's id, as the broker knows it
    Column("issue_id", ForeignKey("issues.id"), nullable=False),
    Column("rows", Integer, nullable=False),  # the batch it may send at most
    Column("placed_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("worker", String(120)),  # host:pid of the process that ran it
    Column("sent", Integer, nullable=False, server_default="0"),
    Column("deferred", Integer, nullable=False, server_default="0"),
    Column("failed", Integer, nullable=False, server_default="0"),
    Index("delivery_tasks_issue", "issue_id", "finished_at"),
    Index("delivery_tasks_worker", "worker", "started_at"),
)

duty = Table(
    "duty",
    metadata,
    # Who is on duty among several `publisher run` (one composes, builds and places
    # tasks): a lease its holder renews, taken over by another when it ends.
    Column("role", String(32), primary_key=True),
    Column("holder", String(120), nullable=False),
    Column("since", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

web_limits = Table(
    "web_limits",
    metadata,
    # The web side's per-client events (sign-ups, wrong /status passwords) within their
    # limit's window, so that several `publisher serve` processes share one count.
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("client", String(64), nullable=False),  # an address, an IPv6 client's /64
    Column("at", Float, nullable=False),
    Index("web_limits_client", "kind", "client", "at"),
    Index("web_limits_at", "at"),
)


def epoch(moment: datetime) -> float:
    return moment.timestamp()


def moment(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)
