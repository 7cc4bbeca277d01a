"""Claims: a delivery row being sent carries its sender (``lease_owner``) while its status
is ``sending`` and its ``next_attempt_at`` is the lease's end; an issue paused by a reply
about the sender or the server keeps that reply (``paused_reason``).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as table:
        table.add_column(sa.Column("lease_owner", sa.String(64)))
    with op.batch_alter_table("issues") as table:
        table.add_column(sa.Column("paused_reason", sa.String(1000)))


def downgrade() -> None:
    with op.batch_alter_table("issues") as table:
        table.drop_column("paused_reason")
    with op.batch_alter_table("deliveries") as table:
        table.drop_column("lease_owner")
