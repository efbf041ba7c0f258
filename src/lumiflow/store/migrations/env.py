"""Alembic environment: lumiflow always passes an open connection in ``config.attributes``."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - lumiflow never runs alembic without one
    raise RuntimeError("run migrations through `lumi db upgrade`")

context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
