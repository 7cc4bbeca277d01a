"""Each subscriber's time zone (an IANA name, or none): a digest with ``deliver_at: local``
reaches them at its hour in their zone. One new column that may be empty, and its index:
every row that was stays as it was.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as table:
        table.add_column(sa.Column("timezone", sa.String(64)))
    op.create_index("subscribers_timezone", "subscribers", ["timezone"])


def downgrade() -> None:
    op.drop_index("subscribers_timezone", "subscribers")
    with op.batch_alter_table("subscribers") as table:
        table.drop_column("timezone")
