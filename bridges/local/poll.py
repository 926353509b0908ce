"""The local desk's change feed: its `local_events` rows, in id order.

Every write of the desk adds its events in the same transaction (see
`LocalDeskBridge._record_events`), so the event id is the poll cursor.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bridges.base import ChangeEvent, Changes, MessageAdded, TicketChanged
from bridges.errors import Invalid
from bridges.local.mapping import message_from_row, parse_row_id, ticket_from_row
from bridges.local.models import LocalEvent, LocalEventKind, LocalMessage, LocalTicket

PROVIDER = "local"


async def read_changes(session: AsyncSession, cursor: str | None, page_size: int) -> Changes:
    """Up to `page_size` events after `cursor` (None: start from now)."""
    if cursor is None:
        last_event_id = await session.scalar(select(func.max(LocalEvent.id)))
        return Changes(events=(), cursor=str(last_event_id or 0))
    after = parse_row_id(cursor, allow_zero=True)
    if after is None:
        raise Invalid(f"not a local desk cursor: {cursor!r}", provider=PROVIDER)
    rows = (await session.scalars(
        select(LocalEvent).where(LocalEvent.id > after).order_by(LocalEvent.id)
        .limit(page_size + 1))).all()
    more = len(rows) > page_size
    rows = rows[:page_size]
    # Two bulk reads whatever the page holds: the cost grows with what
    # changed, never one query per event.
    message_ids = {row.message_id for row in rows
                   if row.kind == LocalEventKind.MESSAGE_ADDED and row.message_id is not None}
    ticket_ids = {row.ticket_id for row in rows if row.kind == LocalEventKind.TICKET_CHANGED}
    messages = await _messages_by_id(session, message_ids)
    tickets = await _tickets_by_id(session, ticket_ids)
    events: list[ChangeEvent] = []
    for row in rows:
        if row.kind == LocalEventKind.MESSAGE_ADDED and row.message_id in messages:
            message = messages[row.message_id]
            events.append(MessageAdded(message_from_row(message, origin_key=row.origin_key)))
        elif row.kind == LocalEventKind.TICKET_CHANGED and row.ticket_id in tickets:
            ticket = tickets[row.ticket_id]
            events.append(TicketChanged(ticket_from_row(ticket), origin_key=row.origin_key))
    next_cursor = str(rows[-1].id) if rows else str(after)
    return Changes(events=events, cursor=next_cursor, more=more)


async def _messages_by_id(session: AsyncSession, ids: set[int]) -> dict[int, LocalMessage]:
    if not ids:
        return {}
    rows = await session.scalars(select(LocalMessage).where(LocalMessage.id.in_(ids)))
    return {row.id: row for row in rows}


async def _tickets_by_id(session: AsyncSession, ids: set[int]) -> dict[int, LocalTicket]:
    if not ids:
        return {}
    rows = await session.scalars(select(LocalTicket).where(LocalTicket.id.in_(ids)))
    return {row.id: row for row in rows}
