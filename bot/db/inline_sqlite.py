"""aiosqlite's interface without aiosqlite's thread.

aiosqlite runs every SQLite call on a worker thread and hands the result
back through the event loop: two thread switches and a loop wake-up per
call. Profiling `bench.relay` showed that hand-off costing ~0.3 ms per
statement on a small VM, ten times the statement itself, and some 40 % of
the bot's CPU time per customer message.

SQLite calls on a local file take microseconds, so the bot makes them on
the event loop's own thread instead. What could block for long is waiting
for a lock another connection holds (another process, or another engine in
this one): SQLite's own busy handler would sleep with the event loop
stopped, so it is off (busy timeout 0) and the wait happens here, with
`asyncio.sleep` between attempts, for up to `BUSY_PATIENCE_SECONDS` (what
the 30 s busy timeout was before). A call that found the database busy did
nothing, so trying it again is safe.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from functools import partial
from typing import Any

import aiosqlite

BUSY_PATIENCE_SECONDS = 30.0
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class _RunNow:
    """Stands in for aiosqlite's queue to its worker thread: runs each call
    at once and settles its future (SQLAlchemy's adapter also queues calls
    directly, e.g. to set the isolation level)."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # handed to the awaiting caller
            if future is not None:
                future.set_exception(exc)
            return
        if future is not None:
            future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._tx = _RunNow()  # type: ignore[assignment]

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        delay, waited = 0.001, 0.0
        while True:
            try:
                return fn(*args, **kwargs)
            except sqlite3.OperationalError as exc:
                if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) not in _BUSY_CODES \
                        or waited >= BUSY_PATIENCE_SECONDS:
                    raise
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 0.05)

    def __await__(self) -> Any:  # no worker thread to start
        return self._connect().__await__()


def inline_connector(path: str) -> Callable[[], asyncio.Future[Any] | Any]:
    """An `async_creator` for SQLAlchemy: connections to the file at `path`."""

    async def connect() -> InlineConnection:
        connection = InlineConnection(partial(
            sqlite3.connect, path, timeout=0, check_same_thread=False))
        return await connection

    return connect
