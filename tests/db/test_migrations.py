"""The migration stairway: every revision upgrades, downgrades and upgrades
again, and the head matches the models exactly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from bot.db.migrate import MIGRATION_LOCK, alembic_config, downgrade, upgrade
from bot.db.models import Base
from bot.db.session import create_engine
from bridges.local.models import LocalDeskBase
from bridges.state import BridgeStateBase

ROOT = Path(__file__).resolve().parents[2]
PROC_LOCKS = Path("/proc/locks")
HAS_PROC_LOCKS = PROC_LOCKS.exists()


def _revisions(url: str) -> list[tuple[str, str]]:
    script = ScriptDirectory.from_config(alembic_config(url))
    revisions = list(script.walk_revisions("base", "heads"))
    revisions.reverse()
    return [(r.revision, r.down_revision or "base") for r in revisions]  # type: ignore[misc]


async def test_stairway(database_url: str) -> None:
    steps = _revisions(database_url)
    assert steps, "no migrations found"
    for revision, previous in steps:
        await asyncio.to_thread(upgrade, database_url, revision)
        await asyncio.to_thread(downgrade, database_url, previous)
        await asyncio.to_thread(upgrade, database_url, revision)


async def test_head_matches_models(migrated_url: str) -> None:
    engine = create_engine(migrated_url)

    def diff(connection):  # type: ignore[no-untyped-def]
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(
            context, [Base.metadata, LocalDeskBase.metadata, BridgeStateBase.metadata])

    def tables(connection):  # type: ignore[no-untyped-def]
        return set(inspect(connection).get_table_names())

    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(diff) == []
            names = await connection.run_sync(tables)
    finally:
        await engine.dispose()
    assert {"tickets", "messages", "outbox", "tg_links", "poll_cursors",
            "local_tickets", "local_events", "bridge_state"} <= names



def _start_migrations(url: str, folder: Path, count: int) -> list[subprocess.Popen[bytes]]:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8",
           "DATABASE_URL": url}
    return [subprocess.Popen([sys.executable, "-m", "bot", "migrate"], cwd=folder, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for _ in range(count)]


async def _finish(processes: list[subprocess.Popen[bytes]]) -> None:
    outputs = [await asyncio.to_thread(p.communicate, None, 120) for p in processes]
    assert [p.returncode for p in processes] == [0] * len(processes), [
        o[0].decode() for o in outputs]


async def _versions(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return list((await connection.exec_driver_sql(
                "SELECT version_num FROM alembic_version")).scalars().all())
    finally:
        await engine.dispose()


async def test_replicas_starting_at_once_migrate_once(database_url: str, tmp_path: Path
                                                       ) -> None:
    """Several `deskbridge migrate` at the same moment (replicas starting
    together): every one succeeds and the schema is built once."""
    await _finish(_start_migrations(database_url, tmp_path, 4))
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert await _versions(database_url) == [head]


async def test_a_replica_waits_while_another_migrates(database_url: str, tmp_path: Path
                                                       ) -> None:
    """The upgrade runs under a lock (PostgreSQL: an advisory lock; SQLite: a
    lock file): while one process holds it (here: the test), the others wait,
    then find the work done."""
    if not database_url.startswith("postgresql"):
        await _sqlite_replica_waits(database_url, tmp_path)
        return
    from sqlalchemy import text

    engine = create_engine(database_url)
    try:
        async with engine.connect() as holder:
            await holder.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                 {"key": MIGRATION_LOCK})
            processes = _start_migrations(database_url, tmp_path, 3)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            async with engine.connect() as observer:
                while await observer.scalar(text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                        "AND NOT granted")) < 3:
                    assert loop.time() < deadline, "the replicas did not wait for the lock"
                    assert all(p.poll() is None for p in processes)
                    await asyncio.sleep(0.1)
            await holder.rollback()  # the lock goes with the transaction
        await _finish(processes)
    finally:
        await engine.dispose()
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert await _versions(database_url) == [head]


def _flock_waiters(path: Path) -> int:
    """Processes blocked in flock() on `path` (Linux lists them in /proc/locks
    with "->")."""
    inode = f":{os.stat(path).st_ino} "
    with PROC_LOCKS.open() as locks:
        return sum(1 for line in locks if "->" in line and "FLOCK" in line and inode in line)


@contextlib.contextmanager
def _holding(path: Path) -> Iterator[None]:
    import fcntl

    with open(path, "a") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        yield  # closing the file lets the lock go


async def _sqlite_replica_waits(database_url: str, tmp_path: Path) -> None:
    """SQLite: the lock file beside the database. While the test holds it,
    every replica waits before touching the database."""
    from sqlalchemy import make_url

    if not HAS_PROC_LOCKS:
        pytest.skip("needs Linux's /proc/locks to see who waits")
    lock_path = Path(f"{make_url(database_url).database}.migrate-lock")
    with _holding(lock_path):
        processes = _start_migrations(database_url, tmp_path, 3)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while _flock_waiters(lock_path) < 3:
            assert loop.time() < deadline, "the replicas did not wait for the lock"
            assert all(p.poll() is None for p in processes)
            await asyncio.sleep(0.1)
    await _finish(processes)
