"""One poller among several processes: a PostgreSQL advisory lock.

The lock lives on a connection of its own (in autocommit, so it never holds
a transaction open). When the process dies its connection closes and the
lock is released; another process takes over on its next attempt, within a
poll interval. SQLite deployments run one process, which is always leader.
"""

from __future__ import annotations

import hashlib
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger("deskbridge.leader")


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for pg_advisory_lock."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class LeaderLock:
    def __init__(self, engine: AsyncEngine, name: str) -> None:
        self._engine = engine
        self._key = lock_key(name)
        self._connection: AsyncConnection | None = None
        self.name = name

    @property
    def uses_database(self) -> bool:
        return self._engine.dialect.name == "postgresql"

    async def ensure(self) -> bool:
        """True while this process holds the lock (taking it if it is free)."""
        if not self.uses_database:
            return True
        try:
            if self._connection is not None:
                await self._connection.execute(text("SELECT 1"))  # still alive, still ours
                return True
            connection = await self._engine.connect()
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            got = await connection.scalar(text("SELECT pg_try_advisory_lock(:key)"),
                                          {"key": self._key})
            if not got:
                await connection.close()
                return False
            self._connection = connection
            log.info("this process now leads %s", self.name)
            return True
        except Exception as exc:
            log.warning("leader lock %s lost: %s", self.name, exc)
            await self.release()
            return False

    async def release(self) -> None:
        """Drop the lock's connection for good: a session-level advisory lock
        would survive a return to the pool, so the connection is invalidated."""
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.invalidate()
                await connection.close()
            except Exception as exc:
                log.debug("closing the leader connection: %s", exc)
