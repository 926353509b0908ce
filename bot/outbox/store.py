"""The outbox table's bookkeeping: claims with leases, outcomes, retries.

Database work is kept out of the HTTP calls: rows are claimed in a short
transaction, the call is made with no transaction open (SQLite's `BEGIN
IMMEDIATE` would otherwise hold the write lock across the network), and the
result is written in another short transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from bot.db.models import Message, OutboxItem, TgLink, utcnow
from bot.middlewares import is_database_outage
from bot.outbox.outcome import Outcome
from bot.outbox.queue import AGENT_CHAT_PREFIX, LIVE_STATUSES, PROVIDER_PREFIX, OutboxStatus

log = logging.getLogger("deskbridge.outbox")

RECORD_ATTEMPTS = 12  # about a minute and a half of backoff


class OutboxStore:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession],
                 lease_seconds: float = 60.0) -> None:
        self.sessionmaker = sessionmaker
        self._lease_seconds = lease_seconds
        self._postgres = sessionmaker.kw["bind"].dialect.name == "postgresql"

    async def claim(self, limit: int, agent_limit: int,
                    provider_limit: int | None = None) -> list[OutboxItem]:
        """Take the due head row of up to `limit` lanes (and `agent_limit`
        agent-chat lanes, highest priority first; `provider_limit` lanes
        toward the provider while its work is held) for this process.

        A claimed row is `in_flight` with a lease (its `next_attempt_at`); a
        process that dies leaves it to be claimed again when the lease ends.
        On PostgreSQL `FOR UPDATE SKIP LOCKED` lets several processes claim
        side by side without waiting on each other or taking the same row;
        an earlier row of a lane, pending or in flight, keeps the lane's
        later rows waiting, so order within a lane holds across processes."""
        now = utcnow()
        earlier = aliased(OutboxItem)
        blocked = (
            select(earlier.id)
            .where(earlier.lane == OutboxItem.lane, earlier.status.in_(LIVE_STATUSES),
                   earlier.id < OutboxItem.id)
            .exists()
        )
        due = select(OutboxItem).where(OutboxItem.status.in_(LIVE_STATUSES),
                                       OutboxItem.next_attempt_at <= now, ~blocked)
        in_agent_chat = OutboxItem.lane.startswith(AGENT_CHAT_PREFIX)
        toward_provider = OutboxItem.lane.startswith(PROVIDER_PREFIX)
        statements = []
        if limit > 0:
            others = due.where(~in_agent_chat)
            if provider_limit is not None:
                others = others.where(~toward_provider)
                if provider_limit > 0:
                    statements.append(due.where(toward_provider).order_by(OutboxItem.id)
                                      .limit(provider_limit))
            statements.append(others.order_by(OutboxItem.id).limit(limit))
        if agent_limit > 0:
            # The group's 20 a minute go to what agents need first (SendPriority).
            statements.append(due.where(in_agent_chat)
                              .order_by(OutboxItem.priority, OutboxItem.id).limit(agent_limit))
        if not statements:
            return []
        if self._postgres:
            statements = [s.with_for_update(skip_locked=True, of=OutboxItem) for s in statements]
        async with self.sessionmaker.begin() as session:
            rows = [row for statement in statements for row in await session.scalars(statement)]
            lease_end = now + timedelta(seconds=self._lease_seconds)
            for row in rows:
                row.status = OutboxStatus.IN_FLIGHT.value
                row.next_attempt_at = lease_end
        return rows

    async def seconds_to_next_due(self, *, agent_chat_wait: float | None) -> float:
        """Until the next row is due (at most 5 s); `agent_chat_wait` is how
        long the agent chat's budget is closed (None: open)."""
        waits = [5.0]
        in_agent_chat = OutboxItem.lane.startswith(AGENT_CHAT_PREFIX)
        async with self.sessionmaker() as session:
            for agent in (False, True):
                if agent and agent_chat_wait is not None:
                    waits.append(agent_chat_wait)
                    continue
                next_at = await session.scalar(
                    select(func.min(OutboxItem.next_attempt_at)).where(
                        OutboxItem.status.in_(LIVE_STATUSES),
                        in_agent_chat if agent else ~in_agent_chat))
                if next_at is not None:
                    waits.append((next_at - utcnow()).total_seconds())
        return min(5.0, max(0.05, min(waits)))

    async def release_held(self) -> None:
        """The provider accepts us again: every row toward it is due now."""
        async with self.sessionmaker.begin() as session:
            await session.execute(
                update(OutboxItem).where(OutboxItem.lane.startswith(PROVIDER_PREFIX),
                                         OutboxItem.status == OutboxStatus.PENDING.value,
                                         OutboxItem.next_attempt_at > utcnow())
                .values(next_attempt_at=utcnow()))

    async def release_all_claims(self) -> None:
        async with self.sessionmaker.begin() as session:
            await session.execute(
                update(OutboxItem).where(OutboxItem.status == OutboxStatus.IN_FLIGHT.value)
                .values(status=OutboxStatus.PENDING.value, next_attempt_at=utcnow()))

    async def complete(self, row: OutboxItem, outcome: Outcome) -> None:
        async with self.sessionmaker.begin() as session:
            for apply in outcome.apply:
                result = apply(session)
                if asyncio.iscoroutine(result):
                    await result
            await self._add_links(session, outcome.links)
            await session.execute(
                update(OutboxItem).where(OutboxItem.id.in_([row.id, *outcome.also_done]))
                .values(status=OutboxStatus.DONE.value, delivered_at=utcnow(), last_error=None))

    async def record_part(self, row: OutboxItem, parts_done: int, links: Outcome) -> None:
        """One Telegram message of a multi-part row went out: remember it, so
        a retry after a failure part-way never repeats it."""
        row.payload = {**row.payload, "parts_done": parts_done}
        async with self.sessionmaker.begin() as session:
            await session.execute(update(OutboxItem).where(OutboxItem.id == row.id)
                                  .values(payload=row.payload))
            await self._add_links(session, links.links)
            if links.also_done:
                await session.execute(
                    update(OutboxItem).where(OutboxItem.id.in_(links.also_done))
                    .values(status=OutboxStatus.DONE.value, delivered_at=utcnow(),
                            last_error=None))

    async def _add_links(self, session: AsyncSession,
                         links: list[tuple[int, int, int | None, int | None]]) -> None:
        if not links:
            return
        insert = postgresql_insert if self._postgres else sqlite_insert
        # One statement; a link recorded before (a resend after a crash) is kept.
        await session.execute(insert(TgLink).values([
            {"tg_chat_id": chat_id, "tg_message_id": message_id, "ticket_id": ticket_id,
             "message_id": message_ref, "direction": "out"}
            for chat_id, message_id, ticket_id, message_ref in links
        ]).on_conflict_do_nothing(index_elements=["tg_chat_id", "tg_message_id"]))

    async def reschedule(self, row: OutboxItem, delay: float, *, count: bool,
                         error: str | None = None) -> None:
        values: dict[str, Any] = {"status": OutboxStatus.PENDING.value,
                                  "next_attempt_at": utcnow() + timedelta(seconds=delay)}
        if count:
            values["attempts"] = OutboxItem.attempts + 1
        if error:
            values["last_error"] = error[:2000]
        async with self.sessionmaker.begin() as session:
            await session.execute(update(OutboxItem).where(OutboxItem.id == row.id)
                                  .values(**values))

    async def bury(self, row: OutboxItem, error: str,
                   also: Callable[[AsyncSession, int | None], Awaitable[None]] | None = None
                   ) -> None:
        """Make the row a dead letter; `also` runs in the same transaction
        with the row's ticket (e.g. to tell the agents)."""
        async with self.sessionmaker.begin() as session:
            await session.execute(
                update(OutboxItem).where(OutboxItem.id == row.id)
                .values(status=OutboxStatus.DEAD.value, attempts=OutboxItem.attempts + 1,
                        last_error=error[:2000]))
            if also is not None:
                await also(session, await self.ticket_of(session, row))

    @staticmethod
    async def ticket_of(session: AsyncSession, row: OutboxItem) -> int | None:
        ticket_id = row.payload.get("ticket_id")
        if ticket_id is not None:
            return int(ticket_id)
        message_id = row.payload.get("message_id")
        if message_id is None:
            return None
        return await session.scalar(select(Message.ticket_id).where(Message.id == message_id))

    async def with_patience(self, record: Callable[..., Awaitable[None]], *args: Any) -> None:
        """The send happened: insist on recording it (a database hiccup must
        not turn into a second send when the lease ends)."""
        delay = 0.25
        for _ in range(RECORD_ATTEMPTS - 1):
            try:
                await record(*args)
                return
            except Exception as exc:
                if not is_database_outage(exc):
                    raise
                log.warning("recording a delivery failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        await record(*args)

