"""Running Alembic from code (`deskbridge run` / `migrate`, and the tests)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import make_url

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


@contextlib.contextmanager
def _sqlite_file_lock(database_url: str) -> Iterator[None]:
    """Processes upgrading one SQLite file take turns. Alembic runs SQLite DDL
    outside a transaction, so the database's own lock does not keep a second
    process from reading the old version while the first creates tables; a
    lock file beside the database does (PostgreSQL: an advisory lock,
    migrations/env.py)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: one process per SQLite file, as documented
        yield
        return
    with open(f"{url.database}.migrate-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def upgrade(database_url: str, revision: str = "head") -> None:
    """Blocking: call it before the event loop starts, or in a thread."""
    with _sqlite_file_lock(database_url):
        command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)
