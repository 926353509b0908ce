"""The migration stairway: every revision upgrades, downgrades and upgrades
again, and the head matches the models exactly."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from bot.db.migrate import alembic_config, downgrade, upgrade
from bot.db.models import Base
from bot.db.session import create_engine
from bridges.local.models import LocalDeskBase
from bridges.state import BridgeStateBase


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
