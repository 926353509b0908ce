"""Satisfaction: the customer rates a closed ticket (1–5) and may add a comment.

Both are stored on the ticket, shown to the agents (a notice in the topic and
the card), and written to the helpdesk as an internal note where the provider
has notes: a `note` message posted through the usual POST_MESSAGE outbox row,
so it is delivered with retries and recognised when the poller sees it again.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.models import Customer, Message, Ticket, utcnow
from bot.i18n import gettext
from bot.outbox import (
    Kind,
    OutboxSignal,
    agent_lane,
    enqueue,
    provider_lane,
    refresh_card,
)
from bot.services.errors import TicketNotFound, UserFacingError
from bot.services.tickets import summarize
from bot.services.types import TgUser, TicketSummary
from bridges.base import Capability, HelpdeskBridge, TicketStatus

COMMENT_LIMIT = 2000


class SatisfactionService:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], bridge: HelpdeskBridge,
                 signal: OutboxSignal, *, agent_language: str) -> None:
        self._sm = sessionmaker
        self._bridge = bridge
        self._signal = signal
        # Notes at the helpdesk are read by the same team as the agent chat.
        self._lang = agent_language

    async def _owned(self, session: AsyncSession, user: TgUser, ticket_id: int
                     ) -> tuple[Ticket, Customer]:
        """Callback data is untrusted: the ticket must be this customer's."""
        row = (await session.execute(
            select(Ticket, Customer).join(Customer, Customer.id == Ticket.customer_id)
            .where(Ticket.id == ticket_id, Customer.tg_user_id == user.tg_user_id))).first()
        if row is None:
            raise TicketNotFound()
        return row[0], row[1]

    async def rate(self, user: TgUser, ticket_id: int, stars: int) -> TicketSummary:
        if not 1 <= stars <= 5:
            raise UserFacingError("errors.bad_request")
        async with self._sm.begin() as session:
            ticket, customer = await self._owned(session, user, ticket_id)
            if ticket.status != TicketStatus.CLOSED:
                raise UserFacingError("customer.rate_after_close")
            if ticket.rating != stars:
                key = "agent.rated" if ticket.rating is None else "agent.rating_changed"
                ticket.rating = stars
                ticket.rated_at = utcnow()
                enqueue(session, Kind.AGENT_NOTICE, agent_lane(ticket.id),
                        {"ticket_id": ticket.id, "key": key,
                         "params": {"stars": "⭐" * stars}})
                refresh_card(session, ticket.id)
                await self._note(session, ticket, gettext(
                    self._lang, "agent.rating_note", stars="⭐" * stars, value=stars))
            summary = summarize(ticket, customer.full_name)
        self._signal.notify()
        return summary

    async def comment(self, user: TgUser, ticket_id: int, text: str) -> TicketSummary:
        text = text.strip()[:COMMENT_LIMIT]
        if not text:
            raise UserFacingError("errors.bad_request")
        async with self._sm.begin() as session:
            ticket, customer = await self._owned(session, user, ticket_id)
            if ticket.rating is None:
                raise UserFacingError("customer.rate_after_close")
            ticket.rating_comment = text
            enqueue(session, Kind.AGENT_NOTICE, agent_lane(ticket.id),
                    {"ticket_id": ticket.id, "key": "agent.rating_commented",
                     "params": {"comment": text}})
            refresh_card(session, ticket.id)
            await self._note(session, ticket, gettext(
                self._lang, "agent.rating_comment_note", stars="⭐" * ticket.rating,
                comment=text))
            summary = summarize(ticket, customer.full_name)
        self._signal.notify()
        return summary

    async def _note(self, session: AsyncSession, ticket: Ticket, text: str) -> None:
        if Capability.NOTES not in self._bridge.capabilities:
            return
        note = Message(ticket_id=ticket.id, author_kind="note",
                       author_name=gettext(self._lang, "agent.rating_note_author"), text=text)
        session.add(note)
        await session.flush()
        enqueue(session, Kind.POST_MESSAGE, provider_lane(ticket.id),
                {"message_id": note.id}, key=f"post:{note.id}")
