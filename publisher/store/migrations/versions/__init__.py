"""Alembic revisions of the state database, oldest first."""
