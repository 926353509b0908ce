"""A small durable key-value store for bridges.

Some providers need state beyond the poll cursor: a session token per
customer (iqstore), the API key a linked agent signed in for (Zenlix), the
last post seen per ticket (Plusofon). Bridges keep it here, namespaced by
provider, in the application's database. Writes are upserts and idempotent.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import DateTime, MetaData, String, Text, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class BridgeStateBase(DeclarativeBase):
    metadata = MetaData(naming_convention={"pk": "pk_%(table_name)s"})


class BridgeStateRow(BridgeStateBase):
    __tablename__ = "bridge_state"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class BridgeState:
    def __init__(self, engine: AsyncEngine, provider: str) -> None:
        self._sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        self._dialect = engine.dialect.name
        self.provider = provider

    async def get(self, key: str) -> str | None:
        async with self._sessionmaker() as session:
            return await session.scalar(select(BridgeStateRow.value).where(
                BridgeStateRow.provider == self.provider, BridgeStateRow.key == key))

    async def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        wanted = list(keys)
        if not wanted:
            return {}
        async with self._sessionmaker() as session:
            rows = await session.execute(select(BridgeStateRow.key, BridgeStateRow.value).where(
                BridgeStateRow.provider == self.provider, BridgeStateRow.key.in_(wanted)))
            return {key: value for key, value in rows.all()}

    async def get_prefixed(self, prefix: str, limit: int) -> dict[str, str]:
        """Up to `limit` entries whose key starts with `prefix` (a literal:
        no `%` or `_` in it), oldest first."""
        if "%" in prefix or "_" in prefix:
            raise ValueError("a literal prefix without LIKE wildcards")
        async with self._sessionmaker() as session:
            rows = await session.execute(
                select(BridgeStateRow.key, BridgeStateRow.value)
                .where(BridgeStateRow.provider == self.provider,
                       BridgeStateRow.key.like(prefix + "%"))
                .order_by(BridgeStateRow.updated_at, BridgeStateRow.key).limit(limit))
            return {key: value for key, value in rows.all()}

    async def set(self, key: str, value: str) -> None:
        await self.set_many({key: value})

    async def set_many(self, values: dict[str, str]) -> None:
        if not values:
            return
        now = datetime.now(UTC)
        rows = [{"provider": self.provider, "key": k, "value": v, "updated_at": now}
                for k, v in values.items()]
        insert = pg_insert if self._dialect == "postgresql" else sqlite_insert
        statement = insert(BridgeStateRow).values(rows)
        statement = statement.on_conflict_do_update(
            index_elements=["provider", "key"],
            set_={"value": statement.excluded.value, "updated_at": statement.excluded.updated_at})
        async with self._sessionmaker.begin() as session:
            await session.execute(statement)

    async def delete(self, key: str) -> None:
        async with self._sessionmaker.begin() as session:
            await _delete(session, self.provider, key)

    async def delete_many(self, keys: Iterable[str]) -> None:
        wanted = list(keys)
        async with self._sessionmaker.begin() as session:
            for start in range(0, len(wanted), 500):
                await session.execute(delete(BridgeStateRow).where(
                    BridgeStateRow.provider == self.provider,
                    BridgeStateRow.key.in_(wanted[start:start + 500])))


async def _delete(session: AsyncSession, provider: str, key: str) -> None:
    await session.execute(delete(BridgeStateRow).where(
        BridgeStateRow.provider == provider, BridgeStateRow.key == key))
