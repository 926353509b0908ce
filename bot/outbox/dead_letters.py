"""Dead letters as a tool for people: what was being done, for which ticket,
why it failed (in words), and *Retry* / *Discard* — in the ticket's topic,
with `/failed` in the agent chat, and with `deskbridge outbox list|show|
replay|discard`. Dead rows are purged after OUTBOX_DEAD_RETENTION_DAYS."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.models import Message, OutboxItem, Ticket, utcnow
from bot.outbox.decisions import Dead
from bot.outbox.queue import OutboxStatus
from bridges.errors import BridgeError, Invalid, NotFound

# What a row was doing, as the agents read it (catalog `dead.what.<kind>`).
WHAT = {
    "provider.create_ticket": "create_ticket",
    "provider.post_message": "post_message",
    "provider.update_ticket": "update_ticket",
    "provider.refer": "refer",
    "tg.customer_message": "customer_message",
    "tg.customer_notice": "customer_notice",
}


def what_of(kind: str) -> str:
    return WHAT.get(kind, "other")


def why_of(exc: BaseException | None, error: str | None = None) -> str:
    """Why it failed, as a catalog key suffix (`dead.why.<reason>`); from the
    exception when there is one, else from the recorded error's class."""
    name = type(exc).__name__ if exc is not None else (error or "").split(":", 1)[0]
    text = str(exc) if exc is not None else (error or "")
    if "blocked the bot" in text:
        return "blocked"
    if isinstance(exc, NotFound) or name == "NotFound":
        return "not_found"
    if isinstance(exc, Invalid) or name in ("Invalid", "Forbidden"):
        return "refused"
    if isinstance(exc, Dead) or name == "Dead":
        return "gone"
    if isinstance(exc, TimeoutError) or name == "TimeoutError":
        return "timeout"
    if isinstance(exc, BridgeError) or name in ("Unavailable", "BridgeError"):
        return "helpdesk_down"
    if name.startswith("Telegram"):
        return "telegram"
    return "unknown"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    row_id: int
    kind: str
    ticket_id: int | None
    ticket_number: str | None
    attempts: int
    created_at: datetime
    last_error: str | None
    payload: dict[str, Any]

    @property
    def what(self) -> str:
        return what_of(self.kind)

    @property
    def why(self) -> str:
        return why_of(None, self.last_error)


class DeadLetters:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sm = sessionmaker

    async def find(self, ids: list[int] | None = None) -> list[DeadLetter]:
        async with self._sm() as session:
            statement = (select(OutboxItem).where(OutboxItem.status == OutboxStatus.DEAD.value)
                         .order_by(OutboxItem.id))
            if ids:
                statement = statement.where(OutboxItem.id.in_(ids))
            rows = list(await session.scalars(statement))
            return [await self._letter(session, row) for row in rows]

    async def get(self, row_id: int) -> DeadLetter | None:
        found = await self.find([row_id])
        return found[0] if found else None

    async def replay(self, ids: list[int] | None = None) -> int:
        """Queue dead letters again (all of them without `ids`)."""
        async with self._sm.begin() as session:
            statement = (update(OutboxItem)
                         .where(OutboxItem.status == OutboxStatus.DEAD.value)
                         .values(status=OutboxStatus.PENDING.value, attempts=0,
                                 next_attempt_at=utcnow()))
            if ids:
                statement = statement.where(OutboxItem.id.in_(ids))
            result = await session.execute(statement)
            return int(getattr(result, "rowcount", 0) or 0)

    async def discard(self, ids: list[int]) -> int:
        async with self._sm.begin() as session:
            result = await session.execute(
                delete(OutboxItem).where(OutboxItem.status == OutboxStatus.DEAD.value,
                                         OutboxItem.id.in_(ids)))
            return int(getattr(result, "rowcount", 0) or 0)

    async def purge(self, older_than: timedelta) -> int:
        async with self._sm.begin() as session:
            result = await session.execute(
                delete(OutboxItem).where(OutboxItem.status == OutboxStatus.DEAD.value,
                                         OutboxItem.created_at < utcnow() - older_than))
            return int(getattr(result, "rowcount", 0) or 0)

    @staticmethod
    async def _letter(session: AsyncSession, row: OutboxItem) -> DeadLetter:
        ticket_id = row.payload.get("ticket_id")
        if ticket_id is None and row.payload.get("message_id") is not None:
            ticket_id = await session.scalar(select(Message.ticket_id).where(
                Message.id == row.payload["message_id"]))
        number = None
        if ticket_id is not None:
            ticket = await session.get(Ticket, ticket_id)
            if ticket is not None:
                number = ticket.number or str(ticket.id)
        return DeadLetter(row.id, row.kind, ticket_id, number, row.attempts, row.created_at,
                          row.last_error, dict(row.payload))


async def outbox_command(url: str, command: str, ids: list[int]) -> int:
    """`deskbridge outbox list|show|replay|discard` (exit code)."""
    from bot.db.session import create_engine, create_sessionmaker

    engine = create_engine(url)
    try:
        letters = DeadLetters(create_sessionmaker(engine))
        if command == "list":
            found = await letters.find()
            if not found:
                print("no dead letters")
                return 0
            print(f"{'id':>6}  {'ticket':>8}  {'kind':<22} {'attempts':>8}  {'since':<16}  why")
            for letter in found:
                print(f"{letter.row_id:>6}  {'#' + (letter.ticket_number or '-'):>8}  "
                      f"{letter.kind:<22} {letter.attempts:>8}  "
                      f"{letter.created_at:%Y-%m-%d %H:%M}  {letter.why}")
            return 0
        if command == "show":
            exit_code = 0
            for row_id in ids:
                one = await letters.get(row_id)
                if one is None:
                    print(f"{row_id}: no such dead letter")
                    exit_code = 1
                    continue
                print(f"id:         {one.row_id}\nticket:     #{one.ticket_number or '-'}"
                      f"\nkind:       {one.kind}\nattempts:   {one.attempts}"
                      f"\nsince:      {one.created_at:%Y-%m-%d %H:%M:%S %Z}"
                      f"\npayload:    {one.payload}\nlast error: {one.last_error or ''}")
            return exit_code
        if command == "replay":
            print(f"{await letters.replay(ids or None)} dead letter(s) queued again")
            return 0
        if command == "discard":
            print(f"{await letters.discard(ids)} dead letter(s) discarded")
            return 0
        raise ValueError(command)
    finally:
        await engine.dispose()
