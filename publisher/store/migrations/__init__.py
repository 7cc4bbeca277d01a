"""The state database's migrations (Alembic). Every change to the schema is a revision in
``versions/``; ``store.database.connect`` brings a database to the newest one, so operators
upgrade in place."""
