"""An issue keeps its subject (``issues.subject``), for the archive's list of past issues.
Issues sent before have none; the archive shows their number and date.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issues") as table:
        table.add_column(sa.Column("subject", sa.String(250)))


def downgrade() -> None:
    with op.batch_alter_table("issues") as table:
        table.drop_column("subject")
