"""Upstream feeds (``sources:`` in schedule.yaml): what each fetch found (``sources``) and
every entry ever seen (``source_entries``), so that an entry is sent once. New tables only:
nothing before changes.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("configured_url", sa.Text(), nullable=False),
        sa.Column("etag", sa.String(1000)),
        sa.Column("last_modified", sa.String(200)),
        sa.Column("fetched_at", sa.Float()),
        sa.Column("status", sa.Integer()),
        sa.Column("error", sa.String(1000)),
        sa.Column("new_entries", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("held", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_fetch_at", sa.Float(), nullable=False, server_default="0"),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("gone_at", sa.Float()),
    )
    op.create_table(
        "source_entries",
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("identity", sa.String(64), primary_key=True),
        sa.Column("sameness", sa.String(64), nullable=False),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
    )
    op.create_index("source_entries_sameness", "source_entries", ["source", "sameness"])


def downgrade() -> None:
    op.drop_index("source_entries_sameness", "source_entries")
    op.drop_table("source_entries")
    op.drop_table("sources")
