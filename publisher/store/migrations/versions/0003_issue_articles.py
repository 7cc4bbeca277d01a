"""What each issue holds: ``issue_articles`` records the articles of an issue when it is
composed, so the next issue of a digest takes what none of its issues has sent, whatever
the articles' dates. Issues composed before this revision chose their articles by a date
window; each keeps its window's end in ``articles_until``: every article dated up to it
counts as sent by that digest, so an upgrade sends nothing twice.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issues") as table:
        table.add_column(sa.Column("articles_until", sa.Float))
    # Confirmation mails ("~confirm") have no articles; the value is harmless for them.
    op.execute("UPDATE issues SET articles_until = window_end")
    op.create_table(
        "issue_articles",
        sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), primary_key=True),
        sa.Column("slug", sa.Text, primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("included", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("issue_articles")
    with op.batch_alter_table("issues") as table:
        table.drop_column("articles_until")
