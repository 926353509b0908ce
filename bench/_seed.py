"""Bulk seeding for benches: a helpdesk with years of history, fast.

Rows go in with Core `insert()` in chunks (executemany), with explicit ids so
the bot's tables and the local desk's agree without reading anything back:
ticket `t` is local ticket `t` (its number too), its opening message is local
message `t` and bot message `t`, and its events are local events `2t - 1`
(ticket changed) and `2t` (message added).

Each seeded customer has several tickets; only the newest is still open (or
waiting for the customer), so a customer who writes again lands in it instead
of being asked to choose. Nothing seeded is due for the SLA job, and the
seeded Telegram message ids are far above what the fake Bot API server hands
out, so new messages never look like replays.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.db.models import Customer, Message, TgLink, Ticket
from bridges.local.models import LocalEvent, LocalMessage, LocalTicket

CHUNK = 5_000
TICKETS_PER_CUSTOMER = 4
# Seeded customers are Telegram users FIRST_SEEDED_USER + customer id.
FIRST_SEEDED_USER = 10_000_000
# Seeded Telegram message ids start here (the fake server counts from 1 per chat).
FIRST_SEEDED_TG_MESSAGE = 1_000_000_000
HISTORY = timedelta(days=365)


@dataclass(frozen=True, slots=True)
class Seeded:
    tickets: int
    customers: int
    open_tickets: int

    def tg_user_id(self, customer_id: int) -> int:
        return FIRST_SEEDED_USER + customer_id


def customer_of(ticket_id: int, customers: int) -> int:
    return (ticket_id - 1) % customers + 1


def is_newest(ticket_id: int, tickets: int, customers: int) -> bool:
    """The customer's last ticket (no later one): the one left open."""
    return ticket_id + customers > tickets


async def seed(engine: AsyncEngine, tickets: int) -> Seeded:
    """`tickets` tickets of `tickets / 4` customers, at the local desk and in
    the bot's tables, with one message and two desk events each."""
    customers = max(1, tickets // TICKETS_PER_CUSTOMER)
    now = datetime.now(UTC)
    step = HISTORY / max(tickets, 1)

    def created(ticket_id: int) -> datetime:
        return now - HISTORY + step * ticket_id

    def customer_rows(ids: range) -> Iterator[dict[str, Any]]:
        for customer_id in ids:
            yield {"id": customer_id, "tg_user_id": FIRST_SEEDED_USER + customer_id,
                   "full_name": f"Customer {customer_id}", "language": "en",
                   "created_at": now - HISTORY}

    def status(ticket_id: int) -> str:
        if not is_newest(ticket_id, tickets, customers):
            return "closed"
        return "open" if ticket_id % 2 else "waiting"

    def local_ticket_rows(ids: range) -> Iterator[dict[str, Any]]:
        for t in ids:
            customer_id = customer_of(t, customers)
            yield {"id": t, "subject": f"Question {t}",
                   "customer_ref": str(FIRST_SEEDED_USER + customer_id),
                   "customer_name": f"Customer {customer_id}", "status": status(t),
                   "priority": "normal", "created_at": created(t), "updated_at": created(t)}

    def local_message_rows(ids: range) -> Iterator[dict[str, Any]]:
        for t in ids:
            customer_id = customer_of(t, customers)
            yield {"id": t, "ticket_id": t, "author_kind": "customer",
                   "author_ref": str(FIRST_SEEDED_USER + customer_id),
                   "author_name": f"Customer {customer_id}",
                   "text": f"Question {t}: something does not work, please help.",
                   "attachments": [], "created_at": created(t)}

    def local_event_rows(ids: range) -> Iterator[dict[str, Any]]:
        for t in ids:
            yield {"id": 2 * t - 1, "ticket_id": t, "kind": "ticket_changed",
                   "message_id": None, "origin_key": f"create:{t}", "created_at": created(t)}
            yield {"id": 2 * t, "ticket_id": t, "kind": "message_added",
                   "message_id": t, "origin_key": f"create:{t}", "created_at": created(t)}

    def ticket_rows(ids: range) -> Iterator[dict[str, Any]]:
        for t in ids:
            closed = status(t) == "closed"
            at = created(t)
            yield {"id": t, "provider": "local", "remote_ticket_id": str(t), "number": str(t),
                   "customer_id": customer_of(t, customers), "subject": f"Question {t}",
                   "status": status(t), "priority": "normal", "created_at": at,
                   "updated_at": at, "closed_at": at + timedelta(hours=2) if closed else None,
                   "first_reply_at": at + timedelta(minutes=20) if closed else None,
                   "rating": 5 if closed and t % 3 == 0 else None}

    def message_rows(ids: range) -> Iterator[dict[str, Any]]:
        for t in ids:
            customer_id = customer_of(t, customers)
            yield {"id": t, "ticket_id": t, "customer_id": customer_id,
                   "author_kind": "customer", "author_name": f"Customer {customer_id}",
                   "text": f"Question {t}: something does not work, please help.",
                   "remote_message_id": str(t), "created_at": created(t)}

    def link_rows(ids: range) -> Iterator[dict[str, Any]]:
        for t in ids:
            yield {"id": t, "tg_chat_id": FIRST_SEEDED_USER + customer_of(t, customers),
                   "tg_message_id": FIRST_SEEDED_TG_MESSAGE + t, "ticket_id": t,
                   "message_id": t, "direction": "in"}

    async with engine.begin() as connection:
        await _insert(connection, Customer, customer_rows, customers)
        await _insert(connection, LocalTicket, local_ticket_rows, tickets)
        await _insert(connection, LocalMessage, local_message_rows, tickets)
        await _insert(connection, LocalEvent, local_event_rows, tickets, per_id=2)
        await _insert(connection, Ticket, ticket_rows, tickets)
        await _insert(connection, Message, message_rows, tickets)
        await _insert(connection, TgLink, link_rows, tickets)
        if connection.dialect.name == "postgresql":
            # Explicit ids leave the sequences behind; the bot's inserts need them ahead.
            for model in (Customer, LocalTicket, LocalMessage, LocalEvent, Ticket, Message,
                          TgLink):
                table = model.__tablename__
                await connection.execute(text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"))
    open_tickets = min(customers, tickets)
    return Seeded(tickets=tickets, customers=customers, open_tickets=open_tickets)


async def _insert(connection: AsyncConnection, model: Any, rows: Any, count: int,
                  per_id: int = 1) -> None:
    """Rows for ids 1..count, `CHUNK` rows per executemany."""
    ids_per_chunk = max(1, CHUNK // per_id)
    for first in range(1, count + 1, ids_per_chunk):
        chunk = list(rows(range(first, min(first + ids_per_chunk, count + 1))))
        if chunk:
            await connection.execute(insert(model), chunk)
