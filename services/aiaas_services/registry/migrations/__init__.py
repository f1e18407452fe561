"""Alembic migrations of the registry database (applied at start-up by ``db.migrate``)."""
