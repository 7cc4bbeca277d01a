"""Alembic's environment: always run from ``store.migrate`` with a connection in hand."""

from __future__ import annotations

from alembic import context

from publisher.store.schema import metadata

connection = context.config.attributes["connection"]
# render_as_batch: SQLite cannot ALTER most things in place; batch mode copies the table.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
