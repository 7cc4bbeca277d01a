"""Past one machine: the tasks placed for the Celery workers, the lease of the scheduler
on duty, and the web side's per-client events that several `serve` processes share.
Three new tables; every row that was stays as it was.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delivery_tasks",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("placed_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("worker", sa.String(120)),
        sa.Column("sent", sa.Integer, nullable=False, server_default="0"),
        sa.Column("deferred", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failed", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("delivery_tasks_issue", "delivery_tasks", ["issue_id", "finished_at"])
    op.create_index("delivery_tasks_worker", "delivery_tasks", ["worker", "started_at"])
    op.create_table(
        "duty",
        sa.Column("role", sa.String(32), primary_key=True),
        sa.Column("holder", sa.String(120), nullable=False),
        sa.Column("since", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )

    op.create_table(
        "web_limits",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("web_limits_client", "web_limits", ["kind", "client", "at"])
    op.create_index("web_limits_at", "web_limits", ["at"])


def downgrade() -> None:
    op.drop_index("web_limits_at", "web_limits")
    op.drop_index("web_limits_client", "web_limits")
    op.drop_table("web_limits")
    op.drop_table("duty")
    op.drop_index("delivery_tasks_worker", "delivery_tasks")
    op.drop_index("delivery_tasks_issue", "delivery_tasks")
    op.drop_table("delivery_tasks")
