"""Engine and session factory.

SQLite (the newcomer's default) gets WAL, a busy timeout and `BEGIN
IMMEDIATE`, so the handlers, the outbox dispatcher and the poller can write
from one process without "database is locked" failures: a deferred SQLite
transaction that later tries to write cannot wait for the lock, an immediate
one can.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from bot.db.inline_sqlite import inline_connector


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, *, inline_sqlite: bool = False, **kwargs: Any) -> AsyncEngine:
    """`inline_sqlite`: the bot's own engine makes SQLite calls on the event
    loop's thread (see bot.db.inline_sqlite) when the URL names a plain file;
    other users (migrations, commands, tests) keep aiosqlite's worker thread,
    which may wait out another process's lock for 30 s without blocking."""
    if is_sqlite(url):
        parsed = make_url(url)
        inline = (inline_sqlite and bool(parsed.database) and parsed.database != ":memory:"
                  and not parsed.query)
        busy_ms = 0 if inline else 30_000  # inline: waited out without blocking the loop
        connect: dict[str, Any] = (
            {"async_creator": inline_connector(str(parsed.database))} if inline
            else {"connect_args": {"timeout": busy_ms / 1000}})
        # One connection: SQLite lets one transaction write at a time anyway, and
        # waiting in the pool's queue hands over at once, where two connections
        # would meet SQLite's busy handler, which sleeps (up to 100 ms a round).
        engine = create_async_engine(url, pool_size=1, max_overflow=0, **connect, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_async_engine(url, pool_pre_ping=True, **kwargs)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
