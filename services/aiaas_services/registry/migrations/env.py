"""Alembic environment: runs migrations on the connection ``db.migrate`` hands over."""

from __future__ import annotations

from alembic import context

from aiaas_services.registry.db import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only via db.migrate
    raise RuntimeError("run registry migrations through aiaas_services.registry.db.migrate(engine)")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
