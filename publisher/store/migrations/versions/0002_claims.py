"""Claims: a delivery row being sent carries its sender (``lease_owner``) while its status
is ``sending`` and its ``next_attempt_at`` is the lease's end; a paused issue keeps why
(``paused_reason``: the reply about the sender or the server) and when (``paused_at``: it
is tried again ``retry_first`` later); ``failures_in_a_row`` is the issue's error budget,
counted by every sender.

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
        table.add_column(sa.Column("paused_at", sa.Float))
        table.add_column(
            sa.Column("failures_in_a_row", sa.Integer, nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("issues") as table:
        table.drop_column("failures_in_a_row")
        table.drop_column("paused_at")
        table.drop_column("paused_reason")
    with op.batch_alter_table("deliveries") as table:
        table.drop_column("lease_owner")
