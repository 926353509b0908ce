"""Alembic migrations; `bot.db.migrate` runs them programmatically."""
