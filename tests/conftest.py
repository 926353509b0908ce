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

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")


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
