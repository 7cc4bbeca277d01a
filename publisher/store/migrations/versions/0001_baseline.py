"""The schema as it was when migrations began: subscribers, their lists, issues, the
delivery ledger and the archive.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("address", sa.String(254), nullable=False),
        sa.Column("key", sa.String(254), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("public_id", sa.String(32), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("hard_bounces", sa.Integer, nullable=False),
        sa.Column("suppressed_at", sa.Float),
        sa.Column("suppressed_reason", sa.String(1000)),
        sa.Column("confirm_sent_at", sa.Float),
    )
    op.create_table(
        "subscriptions",
        sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), primary_key=True),
        sa.Column("list", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "issues",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("window_start", sa.Float),
        sa.Column("window_end", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("period", sa.Float),
        sa.UniqueConstraint("digest", "number"),
    )
    op.create_index("issues_period", "issues", ["digest", "period"], unique=True)
    op.create_table(
        "deliveries",
        sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), primary_key=True),
        sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("first_attempt_at", sa.Float),
        sa.Column("code", sa.Integer),
        sa.Column("reply", sa.String(1000)),
        sa.Column("provider_id", sa.String(200)),
        sa.Column("updated_at", sa.Float),
    )
    op.create_index("deliveries_due", "deliveries", ["issue_id", "status", "next_attempt_at"])
    op.create_index("deliveries_sent_at", "deliveries", ["status", "updated_at"])
    op.create_table(
        "archive",
        sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), primary_key=True),
        sa.Column("html", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("archive", "deliveries", "issues", "subscriptions", "subscribers"):
        op.drop_table(table)
