"""The bot's SQLite engine: calls on the event loop's thread, lock waits in asyncio."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from sqlalchemy import text

from bot.db.session import create_engine


async def test_no_worker_thread_and_a_lock_is_waited_out_without_stopping_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "inline.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}", inline_sqlite=True)
    threads = threading.active_count()
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE t (x INTEGER)"))
    assert threading.active_count() == threads  # aiosqlite would have started one

    blocker = sqlite3.connect(path, isolation_level=None)  # another process, say
    blocker.execute("BEGIN EXCLUSIVE")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async def release() -> None:
        await asyncio.sleep(0.5)
        blocker.execute("COMMIT")

    running = [asyncio.create_task(ticker()), asyncio.create_task(release())]
    try:
        async with engine.begin() as connection:  # waits for the blocker's commit
            await connection.execute(text("INSERT INTO t VALUES (1)"))
        assert ticks >= 20  # the event loop kept running while it waited
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT count(*) FROM t")) == 1
    finally:
        for task in running:
            task.cancel()
        blocker.close()
        await engine.dispose()
