"""Running Alembic from code (`deskbridge run` / `migrate`, and the tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

import migrations

# The pg_advisory_xact_lock an upgrade holds on PostgreSQL (migrations/env.py),
# so that replicas starting at once migrate one after another ("migrate" in ASCII).
MIGRATION_LOCK = 0x6D696772617465


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    # '%' is Alembic's interpolation character; URLs may contain it.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Blocking: call it before the event loop starts, or in a thread."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)
