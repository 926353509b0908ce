"""`deskbridge erase-customer <telegram id>`: a customer's personal data, gone.

Deleted: every message of their tickets (text, files, Telegram links) and
their drafts, every outbox row about them (pending ones too: nothing more is
sent to or about them). Kept, anonymised: the tickets themselves (status,
times, rating) so that statistics still add up, and the customer row, with
no name, username, phone, e-mail or Telegram id left on it. With the local
desk the desk's copies go too; an external helpdesk keeps its own copy, which
must be erased there (the command says so).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.models import Attachment, Customer, Message, OutboxItem, TgLink, Ticket
from bot.outbox import agent_lane, card_lane, customer_lane, provider_lane
from bridges.local.models import LocalEvent, LocalMessage, LocalTicket

ERASED = "(erased)"


@dataclass(frozen=True, slots=True)
class ErasureReport:
    found: bool
    tickets: int = 0
    messages: int = 0
    local_desk_messages: int = 0


async def erase_customer(sessionmaker: async_sessionmaker[AsyncSession], tg_user_id: int,
                         *, provider: str) -> ErasureReport:
    async with sessionmaker.begin() as session:
        customer = await session.scalar(select(Customer).where(Customer.tg_user_id == tg_user_id))
        if customer is None:
            return ErasureReport(found=False)
        tickets = list(await session.scalars(select(Ticket).where(
            Ticket.customer_id == customer.id)))
        ticket_ids = [t.id for t in tickets]
        message_ids = list(await session.scalars(select(Message.id).where(or_(
            Message.customer_id == customer.id, Message.ticket_id.in_(ticket_ids)))))
        await session.execute(delete(Attachment).where(Attachment.message_id.in_(message_ids)))
        await session.execute(delete(TgLink).where(or_(TgLink.message_id.in_(message_ids),
                                                       TgLink.ticket_id.in_(ticket_ids))))
        lanes = [customer_lane(customer.id)]
        lanes += [lane(t) for t in ticket_ids for lane in (agent_lane, card_lane, provider_lane)]
        await session.execute(delete(OutboxItem).where(OutboxItem.lane.in_(lanes)))
        await session.execute(delete(Message).where(Message.id.in_(message_ids)))
        desk_messages = 0
        if provider == "local":
            desk_messages = await _erase_local_desk(session, tickets)
        await session.execute(update(Ticket).where(Ticket.id.in_(ticket_ids)).values(
            subject=ERASED))
        customer.full_name = ERASED
        customer.username = None
        customer.phone = None
        customer.email = None
        customer.remote_customer_id = None
        customer.selected_ticket_id = None
        # The Telegram id is personal data too; a negative id cannot clash with a real one.
        customer.tg_user_id = -customer.id
        return ErasureReport(found=True, tickets=len(ticket_ids), messages=len(message_ids),
                             local_desk_messages=desk_messages)


async def _erase_local_desk(session: AsyncSession, tickets: list[Ticket]) -> int:
    remote_ids = [int(t.remote_ticket_id) for t in tickets
                  if t.remote_ticket_id and t.remote_ticket_id.isdigit()]
    if not remote_ids:
        return 0
    erased = select(LocalMessage.id).where(LocalMessage.ticket_id.in_(remote_ids))
    await session.execute(delete(LocalEvent).where(LocalEvent.message_id.in_(erased)))
    result = await session.execute(delete(LocalMessage).where(
        LocalMessage.ticket_id.in_(remote_ids)))
    await session.execute(update(LocalTicket).where(LocalTicket.id.in_(remote_ids)).values(
        subject=ERASED, customer_ref=ERASED, customer_name=ERASED))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
