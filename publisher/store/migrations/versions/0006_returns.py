"""Returned mail (``returns:`` in schedule.yaml): each bounce, complaint and mailed
unsubscribe acted on (``returns``), and the digests held for a complaint or bounce rate
(``holds``). New tables only: nothing before changes.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "returns",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(64), nullable=False, unique=True),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), sa.ForeignKey("subscribers.id")),
        sa.Column("issue_id", sa.Integer(), sa.ForeignKey("issues.id")),
        sa.Column("reason", sa.String(1000), nullable=False),
    )
    op.create_index("returns_issue", "returns", ["issue_id", "kind"])
    op.create_index("returns_subscriber", "returns", ["subscriber_id", "kind", "received_at"])
    op.create_table(
        "holds",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("reason", sa.String(1000), nullable=False),
        sa.Column("held_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("holds")
    op.drop_index("returns_subscriber", "returns")
    op.drop_index("returns_issue", "returns")
    op.drop_table("returns")
