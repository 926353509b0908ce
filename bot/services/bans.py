"""Bans: Telegram users whose messages the bot neither relays nor turns into
tickets (`/ban`, `/unban`, `/bans` in the agent chat).

A banned user's message is dropped before it is stored; the first one after
a ban gets one polite notice (`told_at` is set in the same statement that
decides it, so two processes never both send it), later ones nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.models import Ban, Customer, Ticket, utcnow


@dataclass(frozen=True, slots=True)
class BanEntry:
    tg_user_id: int
    name: str | None
    reason: str | None
    banned_by: str | None
    created_at: datetime


class BanService:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sm = sessionmaker

    async def customer_of(self, ticket_id: int) -> tuple[int, str]:
        """The Telegram id and name of a ticket's customer."""
        async with self._sm() as session:
            row = (await session.execute(
                select(Customer.tg_user_id, Customer.full_name).join(
                    Ticket, Ticket.customer_id == Customer.id).where(Ticket.id == ticket_id)
            )).one()
            return int(row[0]), str(row[1])

    async def name_of(self, tg_user_id: int) -> str | None:
        async with self._sm() as session:
            return await session.scalar(
                select(Customer.full_name).where(Customer.tg_user_id == tg_user_id))

    async def ban(self, tg_user_id: int, reason: str | None, banned_by: str) -> bool:
        """False when the user was banned already (the reason is updated)."""
        try:
            async with self._sm.begin() as session:
                existing = await session.scalar(select(Ban).where(Ban.tg_user_id == tg_user_id))
                if existing is not None:
                    existing.reason = reason or existing.reason
                    return False
                session.add(Ban(tg_user_id=tg_user_id, reason=reason, banned_by=banned_by))
        except IntegrityError:
            return False  # banned by someone else at the same moment
        return True

    async def unban(self, tg_user_id: int) -> bool:
        async with self._sm.begin() as session:
            result = await session.execute(delete(Ban).where(Ban.tg_user_id == tg_user_id))
            return bool(getattr(result, "rowcount", 0))

    async def list(self, limit: int = 50) -> list[BanEntry]:
        async with self._sm() as session:
            rows = await session.execute(
                select(Ban, Customer.full_name)
                .outerjoin(Customer, Customer.tg_user_id == Ban.tg_user_id)
                .order_by(Ban.created_at.desc(), Ban.id.desc()).limit(limit))
            return [BanEntry(ban.tg_user_id, name, ban.reason, ban.banned_by, ban.created_at)
                    for ban, name in rows]

    async def check(self, tg_user_id: int) -> tuple[bool, bool]:
        """(banned, tell them now): the notice goes out once per ban."""
        async with self._sm() as session:
            told = await session.execute(
                select(Ban.told_at).where(Ban.tg_user_id == tg_user_id))
            row = told.first()
        if row is None:
            return False, False
        if row[0] is not None:
            return True, False
        async with self._sm.begin() as session:
            result = await session.execute(
                update(Ban).where(Ban.tg_user_id == tg_user_id, Ban.told_at.is_(None))
                .values(told_at=utcnow()))
            return True, bool(getattr(result, "rowcount", 0))
