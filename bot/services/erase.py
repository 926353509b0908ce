"""`deskbridge erase-customer <telegram id>`: a customer's personal data, gone.

Deleted: every message of their tickets (text, files, Telegram links) and
their drafts, every outbox row about them (pending ones too: nothing more is
sent to or about them). Kept, anonymised: the tickets themselves (status,
times, rating) so that statistics still add up, and the customer row, with
no name, username, phone, e-mail or Telegram id left on it. The bridge
erases what it can of the helpdesk's copy and of its own records
(`erase_customer` of the contract: the local desk's copies go; an external
helpdesk keeps its own copy, which must be erased there, as the command says).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.models import Attachment, Customer, Message, OutboxItem, TgLink, Ticket
from bot.outbox import agent_lane, card_lane, customer_lane, provider_lane
from bridges.base import HelpdeskBridge

ERASED = "(erased)"


@dataclass(frozen=True, slots=True)
class ErasureReport:
    found: bool
    tickets: int = 0
    messages: int = 0
    desk_messages: int = 0  # erased at the helpdesk by the bridge
    desk_complete: bool = False  # the helpdesk keeps nothing more of the customer


async def erase_customer(sessionmaker: async_sessionmaker[AsyncSession], tg_user_id: int,
                         *, bridge: HelpdeskBridge) -> ErasureReport:
    async with sessionmaker() as session:
        customer = await session.scalar(select(Customer).where(Customer.tg_user_id == tg_user_id))
        if customer is None:
            return ErasureReport(found=False)
        remote_ids = [remote for remote in await session.scalars(select(
            Ticket.remote_ticket_id).where(Ticket.customer_id == customer.id)) if remote]
    # The helpdesk's side first: if the bot's part fails afterwards, running
    # the command again finds the customer and finishes (both are repeatable).
    desk = await bridge.erase_customer(str(tg_user_id), remote_ids)
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
                             desk_messages=desk.messages, desk_complete=desk.complete)
