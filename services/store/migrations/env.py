"""Alembic environment: runs on the connection the store hands it (see services/store/migrate.py)."""

from __future__ import annotations

from alembic import context

from services.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `llm-mesh migrate`, which supplies the connection")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
