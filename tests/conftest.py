"""Shared fixtures: a database per test (SQLite file, or a clean PostgreSQL
schema when TEST_DATABASE_URL is set) and Redis when TEST_REDIS_URL is set."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.db.migrate import upgrade
from bot.db.session import create_engine


def _private_database(url: str | None) -> str | None:
    """A database of this test run's own beside the one TEST_DATABASE_URL names,
    so that test runs sharing a server (several developers, CI) never drop
    each other's tables. Every test still starts from an empty schema."""
    if not url or not url.startswith("postgresql"):
        return url
    base, _, name = url.rpartition("/")
    private = f"{name}_run_{os.getpid()}"

    async def create() -> None:
        engine = create_engine(f"{base}/{name}", isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                await connection.execute(text(f'DROP DATABASE IF EXISTS "{private}"'))
                await connection.execute(text(f'CREATE DATABASE "{private}"'))
        finally:
            await engine.dispose()

    asyncio.run(create())
    _CREATED.append((f"{base}/{name}", private))
    return f"{base}/{private}"


_CREATED: list[tuple[str, str]] = []
TEST_DATABASE_URL = _private_database(os.environ.get("TEST_DATABASE_URL"))
if TEST_DATABASE_URL:
    os.environ["TEST_DATABASE_URL"] = TEST_DATABASE_URL  # for code that reads it directly
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")


def pytest_unconfigure(config: pytest.Config) -> None:
    async def drop(admin_url: str, name: str) -> None:
        engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            await engine.dispose()

    for admin_url, name in _CREATED:
        asyncio.run(drop(admin_url, name))


async def reset_postgres(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


@pytest.fixture
async def database_url(tmp_path: Path) -> AsyncIterator[str]:
    """An empty database: SQLite in the test's folder, or PostgreSQL."""
    if TEST_DATABASE_URL:
        await reset_postgres(TEST_DATABASE_URL)
        yield TEST_DATABASE_URL
        await reset_postgres(TEST_DATABASE_URL)
    else:
        yield f"sqlite+aiosqlite:///{tmp_path / 'deskbridge.db'}"


@pytest.fixture
async def migrated_url(database_url: str) -> str:
    await asyncio.to_thread(upgrade, database_url)
    return database_url


@pytest.fixture
async def redis_url() -> AsyncIterator[str | None]:
    if not TEST_REDIS_URL:
        yield None
        return
    import redis.asyncio as redis

    client = redis.from_url(TEST_REDIS_URL)
    await client.flushdb()
    yield TEST_REDIS_URL
    await client.flushdb()
    await client.aclose()
