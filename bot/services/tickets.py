"""Ticket logic for both sides of the bridge.

Each public method is one transaction: it changes the state and writes the
outbox rows for every side effect that change causes (see
`bot.services.outbox`). Nothing here talks to Telegram or the provider
directly, except `link_agent`, which only reads the provider's accounts.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.models import (
    Agent,
    Attachment,
    Customer,
    Message,
    OutboxItem,
    TgLink,
    Ticket,
    utcnow,
)
from bot.i18n import gettext, pick_language
from bot.outbox import (
    Kind,
    OutboxSignal,
    agent_lane,
    customer_lane,
    enqueue,
    provider_lane,
    refresh_card,
)
from bot.services import sla
from bot.services.errors import NotSupported, TicketNotFound, UserFacingError
from bot.services.identity import customer_identity
from bot.services.sla import SlaPolicy
from bot.services.types import (
    CustomerResult,
    HistoryLine,
    IncomingMessage,
    Outcome,
    Page,
    TgUser,
    TicketSummary,
)
from bot.telegram.pacer import SendPriority
from bridges.base import (
    Capabilities,
    Capability,
    Department,
    HelpdeskBridge,
    Priority,
    TicketStatus,
)

# Album parts arrive as separate updates within a second or so; the rows of
# an album's message wait this long so all files travel together.
ALBUM_WAIT_SECONDS = 2.0
PAGE_SIZE = 5
DEPARTMENTS_TTL_SECONDS = 300.0
# How the bot's messages about a ticket begin in the agent chat (render.py).
TICKET_TAG = re.compile(r"^(?:🎫 )?#([\w-]+)")
TICKET_NUMBER = re.compile(r"#([\w-]+)")
SUBJECT_MAX = 120
OPEN_STATUSES = (TicketStatus.OPEN.value, TicketStatus.WAITING.value)
# Flood control: a customer over CUSTOMER_MESSAGES_PER_MINUTE has what they
# write in the next seconds merged into one message; its outbox rows wait a
# little longer than the merge window, so a part merged at the last moment
# is never missed by a delivery that already read the message.
FLOOD_WINDOW = timedelta(minutes=1)
FLOOD_MERGE_SECONDS = 10.0
FLOOD_DELIVERY_MARGIN_SECONDS = 2.0


def render_escape(text: str) -> str:
    return html.escape(text, quote=False)


def subject_from_text(text: str, fallback: str) -> str:
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not first_line:
        return fallback
    if len(first_line) > SUBJECT_MAX:
        return first_line[: SUBJECT_MAX - 1].rstrip() + "…"
    return first_line


def summarize(ticket: Ticket, customer_name: str) -> TicketSummary:
    return TicketSummary(
        ticket_id=ticket.id,
        number=ticket.number or str(ticket.id),
        subject=ticket.subject,
        status=ticket.status,
        priority=ticket.priority,
        customer_name=customer_name,
        assignee_name=ticket.assignee_name,
        created_at=ticket.created_at,
        updated_at=ticket.updated_at,
        rating=ticket.rating,
        tg_topic_id=ticket.tg_topic_id,
    )


@dataclass(frozen=True, slots=True)
class NewTicketChoice:
    """What a new ticket would be filed under."""

    department_id: str | None
    departments: Sequence[Department]


def _only(departments: Sequence[Department]) -> str | None:
    """With exactly one department there is nothing to choose."""
    return departments[0].remote_id if len(departments) == 1 else None


class TicketService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        bridge: HelpdeskBridge,
        signal: OutboxSignal,
        *,
        provider: str,
        sla_policy: SlaPolicy | None = None,
        messages_per_minute: int = 0,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._bridge = bridge
        self._signal = signal
        self.provider = provider
        self._sla = sla_policy or SlaPolicy()
        self._per_minute = messages_per_minute  # 0: no flood control
        self._departments: tuple[float, tuple[Department, ...]] | None = None

    @property
    def capabilities(self) -> Capabilities:
        return self._bridge.capabilities

    @property
    def uploads_files(self) -> bool:
        return self._bridge.uploads_files

    def require(self, capability: Capability) -> None:
        if capability not in self._bridge.capabilities:
            raise NotSupported()

    # ------------------------------------------------------------------ people

    async def ensure_customer(self, user: TgUser) -> Customer:
        async with self._sessionmaker.begin() as session:
            return await self._customer(session, user)

    async def _customer(self, session: AsyncSession, user: TgUser) -> Customer:
        customer = await session.scalar(
            select(Customer).where(Customer.tg_user_id == user.tg_user_id)
        )
        if customer is None:
            customer = Customer(
                tg_user_id=user.tg_user_id,
                full_name=user.full_name,
                username=user.username,
                language=pick_language(user.language_code),
            )
            session.add(customer)
            await session.flush()
        elif customer.full_name != user.full_name or customer.username != user.username:
            customer.full_name = user.full_name
            customer.username = user.username
        return customer

    async def customer_language(self, tg_user_id: int) -> str | None:
        async with self._sessionmaker() as session:
            return await session.scalar(
                select(Customer.language).where(Customer.tg_user_id == tg_user_id)
            )

    async def set_customer_language(self, user: TgUser, language: str) -> None:
        async with self._sessionmaker.begin() as session:
            customer = await self._customer(session, user)
            customer.language = language

    async def set_customer_blocked(self, tg_user_id: int, blocked: bool) -> None:
        """The customer blocked (or unblocked) the bot: shown to the agents."""
        async with self._sessionmaker.begin() as session:
            customer = await session.scalar(
                select(Customer).where(Customer.tg_user_id == tg_user_id)
            )
            if customer is None or (customer.blocked_at is not None) == blocked:
                return
            customer.blocked_at = utcnow() if blocked else None
            key = "agent.customer_blocked" if blocked else "agent.customer_unblocked"
            for ticket in await self._open_tickets(session, customer.id):
                enqueue(session, Kind.AGENT_NOTICE, agent_lane(ticket.id),
                        {"ticket_id": ticket.id, "key": key})
                # The card says so too, for as long as it is true.
                refresh_card(session, ticket.id)
        self._signal.notify()

    async def remember_agent(self, user: TgUser) -> None:
        async with self._sessionmaker.begin() as session:
            await self._agent(session, user)

    async def _agent(self, session: AsyncSession, user: TgUser) -> Agent:
        agent = await session.scalar(select(Agent).where(Agent.tg_user_id == user.tg_user_id))
        if agent is None:
            agent = Agent(tg_user_id=user.tg_user_id, full_name=user.full_name,
                          username=user.username)
            session.add(agent)
            await session.flush()
        elif agent.full_name != user.full_name or agent.username != user.username:
            agent.full_name = user.full_name
            agent.username = user.username
        return agent

    # --------------------------------------------------------- customer side

    async def departments(self) -> Sequence[Department]:
        """What a new ticket may be filed under (cached: it rarely changes)."""
        if Capability.DEPARTMENTS not in self._bridge.capabilities:
            return ()
        now = time.monotonic()
        if self._departments is None or now - self._departments[0] > DEPARTMENTS_TTL_SECONDS:
            self._departments = (now, tuple(await self._bridge.list_departments()))
        return self._departments[1]

    async def handle_customer_message(
        self, incoming: IncomingMessage, *, force_new: bool = False,
        department_id: str | None = None,
    ) -> CustomerResult:
        """Route a customer's message: a new ticket, the ticket they replied
        to, their selected or only open ticket, or a draft they must place."""
        departments = await self.departments()
        try:
            async with self._sessionmaker.begin() as session:
                result = await self._route_customer_message(
                    session, incoming, force_new, NewTicketChoice(department_id, departments))
        except IntegrityError:
            # The (chat, message) link exists: Telegram handed this update out again.
            return CustomerResult(Outcome.DUPLICATE)
        self._signal.notify()
        return result

    async def _route_customer_message(
        self, session: AsyncSession, incoming: IncomingMessage, force_new: bool,
        choice: NewTicketChoice,
    ) -> CustomerResult:
        customer = await self._customer(session, incoming.sender)
        if await self._is_linked(session, incoming.tg_chat_id, incoming.tg_message_id):
            return CustomerResult(Outcome.DUPLICATE)

        album_message = await self._pending_album_message(session, customer, incoming)
        if album_message is not None:
            await self._add_files(session, album_message, incoming)
            await self._link(session, incoming, album_message)
            ticket = (
                await session.get(Ticket, album_message.ticket_id)
                if album_message.ticket_id else None
            )
            return CustomerResult(
                Outcome.ALBUM_PART,
                summarize(ticket, customer.full_name) if ticket else None,
            )

        if not force_new and incoming.reply_to_tg_message_id is not None:
            replied = await self._ticket_of_tg_message(
                session, incoming.tg_chat_id, incoming.reply_to_tg_message_id
            ) or await self._ticket_named_in(session, customer, incoming.reply_to_bot_text)
            if replied is not None and replied.customer_id == customer.id:
                if replied.status == TicketStatus.CLOSED:
                    # Lose nothing: the message waits as a draft the customer can place.
                    draft = await self._new_message(session, customer, None, incoming)
                    open_tickets = await self._open_tickets(session, customer.id)
                    return CustomerResult(
                        Outcome.TICKET_CLOSED,
                        summarize(replied, customer.full_name),
                        draft_message_id=draft.id,
                        choices=[summarize(t, customer.full_name) for t in open_tickets],
                    )
                customer.selected_ticket_id = replied.id
                return await self._append(session, customer, replied, incoming)

        open_tickets = [] if force_new else await self._open_tickets(session, customer.id)
        if not open_tickets:
            return await self._open(session, customer, incoming, choice)
        selected = next((t for t in open_tickets if t.id == customer.selected_ticket_id), None)
        if selected is None and len(open_tickets) == 1:
            selected = open_tickets[0]
        if selected is not None:
            return await self._append(session, customer, selected, incoming)
        draft = await self._new_message(session, customer, None, incoming)
        return CustomerResult(
            Outcome.NEEDS_CHOICE,
            draft_message_id=draft.id,
            choices=[summarize(t, customer.full_name) for t in open_tickets],
        )

    async def place_draft(
        self, user: TgUser, draft_message_id: int, ticket_id: int | None,
        department_id: str | None = None,
    ) -> TicketSummary:
        """The customer chose where a draft goes: `ticket_id`, or a new ticket
        (in `department_id`, which must be one the provider offers)."""
        departments = await self.departments()
        if department_id is not None and department_id not in {
                d.remote_id for d in departments}:
            raise UserFacingError("errors.bad_request")  # forged callback data
        async with self._sessionmaker.begin() as session:
            customer = await self._customer(session, user)
            draft = await session.get(Message, draft_message_id)
            if draft is None or draft.customer_id != customer.id:
                raise TicketNotFound()
            if draft.ticket_id is not None:  # already placed (a repeated tap)
                ticket = await self._owned_ticket(session, customer, draft.ticket_id)
                return summarize(ticket, customer.full_name)
            if ticket_id is None:
                ticket = await self._create_ticket_for(
                    session, customer, draft,
                    department_id=department_id or _only(departments))
            else:
                ticket = await self._owned_ticket(session, customer, ticket_id)
                if ticket.status == TicketStatus.CLOSED:
                    raise UserFacingError("customer.ticket_is_closed", number=ticket.number)
                draft.ticket_id = ticket.id
                await self._link_draft(session, draft, ticket)
                self._enqueue_customer_message(session, ticket, draft)
            customer.selected_ticket_id = ticket.id
            summary = summarize(ticket, customer.full_name)
        self._signal.notify()
        return summary

    async def _append(
        self, session: AsyncSession, customer: Customer, ticket: Ticket,
        incoming: IncomingMessage,
    ) -> CustomerResult:
        if await self._merged_as_flood(session, customer, ticket, incoming):
            return CustomerResult(Outcome.APPENDED, summarize(ticket, customer.full_name))
        message = await self._new_message(session, customer, ticket, incoming)
        ticket.updated_at = utcnow()
        if ticket.status == TicketStatus.WAITING:
            ticket.status = TicketStatus.OPEN.value
        self._enqueue_customer_message(session, ticket, message,
                                       delay=self._album_delay(incoming))
        return CustomerResult(Outcome.APPENDED, summarize(ticket, customer.full_name))

    async def _merged_as_flood(
        self, session: AsyncSession, customer: Customer, ticket: Ticket,
        incoming: IncomingMessage,
    ) -> bool:
        """Flood control. Above the customer's rate, what they write is merged
        into one message (one mirror in the topic, one post to the helpdesk)
        that collects for FLOOD_MERGE_SECONDS; they are asked once to slow
        down. Nothing is dropped: every part's text and files are in it, and
        every Telegram message of theirs is linked to it."""
        if not self._per_minute:
            return False
        now = utcnow()
        batch = await session.scalar(
            select(Message).where(Message.ticket_id == ticket.id,
                                  Message.customer_id == customer.id,
                                  Message.merged_until > now)
            .order_by(Message.id.desc()).limit(1))
        if batch is None:
            recent = await session.scalar(
                select(func.coalesce(func.sum(Message.parts), 0)).where(
                    Message.customer_id == customer.id,
                    Message.created_at > now - FLOOD_WINDOW)) or 0
            if recent < self._per_minute:
                return False
            batch = await self._new_message(session, customer, ticket, incoming)
            batch.merged_until = now + timedelta(seconds=FLOOD_MERGE_SECONDS)
            ticket.updated_at = now
            if ticket.status == TicketStatus.WAITING:
                ticket.status = TicketStatus.OPEN.value
            self._enqueue_customer_message(
                session, ticket, batch,
                delay=FLOOD_MERGE_SECONDS + FLOOD_DELIVERY_MARGIN_SECONDS)
            told = customer.slow_down_told_at
            if told is None or told < now - FLOOD_WINDOW:
                customer.slow_down_told_at = now
                enqueue(session, Kind.CUSTOMER_NOTICE, customer_lane(customer.id),
                        {"ticket_id": ticket.id, "key": "customer.slow_down"})
            return True
        if incoming.text:
            if batch.html is not None or incoming.html is not None:
                batch.html = "\n\n".join(
                    part for part in (batch.html or render_escape(batch.text),
                                      incoming.html or render_escape(incoming.text)) if part)
            batch.text = "\n\n".join(part for part in (batch.text, incoming.text) if part)
        batch.parts += 1
        await self._add_files(session, batch, incoming)
        await self._link(session, incoming, batch)
        ticket.updated_at = now
        return True

    def _enqueue_customer_message(
        self, session: AsyncSession, ticket: Ticket, message: Message, delay: float = 0.0
    ) -> None:
        enqueue(session, Kind.POST_MESSAGE, provider_lane(ticket.id),
                {"message_id": message.id}, key=f"post:{message.id}", delay=delay)
        enqueue(session, Kind.MIRROR, agent_lane(ticket.id),
                {"message_id": message.id}, key=f"mirror:{message.id}", delay=delay)
        if sla.customer_wrote(ticket, self._sla, utcnow()):
            # A new wait for an agent (and the status, if it was waiting): the card shows both.
            refresh_card(session, ticket.id, delay=delay)

    async def _open(
        self, session: AsyncSession, customer: Customer, incoming: IncomingMessage,
        choice: NewTicketChoice,
    ) -> CustomerResult:
        message = await self._new_message(session, customer, None, incoming)
        waiting = self._what_is_missing(customer, choice, message.id)
        if waiting is not None:
            return waiting  # the message waits as a draft
        ticket = await self._create_ticket_for(
            session, customer, message, delay=self._album_delay(incoming),
            department_id=choice.department_id or _only(choice.departments))
        return CustomerResult(Outcome.CREATED, summarize(ticket, customer.full_name))

    def _what_is_missing(self, customer: Customer, choice: NewTicketChoice, draft_id: int
                         ) -> CustomerResult | None:
        """What the customer must give before a ticket can be opened."""
        if self._bridge.missing_contact(customer_identity(customer)):
            return CustomerResult(Outcome.NEEDS_CONTACT, draft_message_id=draft_id)
        if choice.department_id is None and len(choice.departments) > 1:
            return CustomerResult(Outcome.NEEDS_DEPARTMENT, draft_message_id=draft_id,
                                  departments=choice.departments)
        return None

    async def save_contact(self, user: TgUser, *, phone: str | None = None,
                           email: str | None = None) -> CustomerResult:
        """The customer shared a phone number or typed an e-mail: remember it
        and open the ticket their waiting messages were held for."""
        departments = await self.departments()
        async with self._sessionmaker.begin() as session:
            customer = await self._customer(session, user)
            if phone:
                customer.phone = phone if phone.startswith("+") else f"+{phone}"
            if email:
                customer.email = email
            drafts = list(await session.scalars(
                select(Message).where(Message.customer_id == customer.id,
                                      Message.ticket_id.is_(None)).order_by(Message.id)))
            if not drafts:
                return CustomerResult(Outcome.CONTACT_SAVED)
            waiting = self._what_is_missing(customer, NewTicketChoice(None, departments),
                                            drafts[0].id)
            if waiting is not None:
                return waiting
            ticket = await self._create_ticket_for(session, customer, drafts[0],
                                                   department_id=_only(departments))
            for draft in drafts[1:]:
                draft.ticket_id = ticket.id
                await self._link_draft(session, draft, ticket)
                self._enqueue_customer_message(session, ticket, draft)
            result = CustomerResult(Outcome.CREATED, summarize(ticket, customer.full_name))
        self._signal.notify()
        return result

    async def _create_ticket_for(
        self, session: AsyncSession, customer: Customer, message: Message, delay: float = 0.0,
        *, department_id: str | None = None,
    ) -> Ticket:
        fallback = gettext(customer.language, "customer.default_subject",
                           name=customer.full_name)
        ticket = Ticket(
            provider=self.provider,
            customer_id=customer.id,
            subject=subject_from_text(message.text, fallback),
            status=TicketStatus.OPEN.value,
            priority=Priority.NORMAL.value,
            department_id=department_id,
        )
        session.add(ticket)
        await session.flush()
        message.ticket_id = ticket.id
        await self._link_draft(session, message, ticket)
        customer.selected_ticket_id = ticket.id
        sla.customer_wrote(ticket, self._sla, utcnow())  # the first reply is due from now
        enqueue(session, Kind.CREATE_TICKET, provider_lane(ticket.id),
                {"ticket_id": ticket.id, "message_id": message.id},
                key=f"create:{ticket.id}", delay=delay)
        # The card carries the opening text, files follow as a mirror; the
        # agent group's budget serves a new ticket before anything else.
        enqueue(session, Kind.CARD, agent_lane(ticket.id), {"ticket_id": ticket.id},
                delay=delay, priority=SendPriority.NEW_TICKET)
        enqueue(session, Kind.MIRROR, agent_lane(ticket.id),
                {"message_id": message.id, "files_only": True},
                key=f"mirror:{message.id}", delay=delay)
        enqueue(session, Kind.CUSTOMER_NOTICE, customer_lane(customer.id),
                {"ticket_id": ticket.id, "key": "customer.ticket_created"})
        return ticket

    @staticmethod
    def _album_delay(incoming: IncomingMessage) -> float:
        return ALBUM_WAIT_SECONDS if incoming.tg_media_group_id else 0.0

    async def _pending_album_message(
        self, session: AsyncSession, customer: Customer, incoming: IncomingMessage
    ) -> Message | None:
        """The message an album part belongs to, if it has not gone out yet."""
        if incoming.tg_media_group_id is None:
            return None
        message = await session.scalar(
            select(Message)
            .where(Message.customer_id == customer.id,
                   Message.tg_media_group_id == incoming.tg_media_group_id)
            .order_by(Message.id.desc())
            .limit(1)
        )
        if message is None:
            return None
        if message.ticket_id is None:
            return message  # a draft: nothing has gone out
        opening = await session.scalar(
            select(func.min(Message.id)).where(Message.ticket_id == message.ticket_id))
        # The opening message travels with the ticket's creation, others on their own.
        key = f"create:{message.ticket_id}" if opening == message.id else f"post:{message.id}"
        delivered = await session.scalar(
            select(func.count()).select_from(OutboxItem).where(
                OutboxItem.idempotency_key == key, OutboxItem.status != "pending"))
        return None if delivered else message

    async def _new_message(
        self, session: AsyncSession, customer: Customer, ticket: Ticket | None,
        incoming: IncomingMessage,
    ) -> Message:
        message = Message(
            ticket_id=ticket.id if ticket else None,
            customer_id=customer.id,
            author_kind="customer",
            author_name=customer.full_name,
            text=incoming.text,
            html=incoming.html,
            tg_media_group_id=incoming.tg_media_group_id,
        )
        session.add(message)
        await session.flush()
        await self._add_files(session, message, incoming)
        await self._link(session, incoming, message)
        return message

    async def _add_files(
        self, session: AsyncSession, message: Message, incoming: IncomingMessage
    ) -> None:
        for file in incoming.files:
            session.add(Attachment(
                message_id=message.id, kind=file.kind, file_name=file.file_name,
                mime_type=file.mime_type, size=file.size, tg_file_id=file.tg_file_id,
            ))
        if incoming.text and not message.text:
            message.text = incoming.text
            message.html = incoming.html
        await session.flush()

    async def _link(
        self, session: AsyncSession, incoming: IncomingMessage, message: Message
    ) -> None:
        session.add(TgLink(
            tg_chat_id=incoming.tg_chat_id, tg_message_id=incoming.tg_message_id,
            ticket_id=message.ticket_id, message_id=message.id, direction="in",
        ))
        await session.flush()

    async def _link_draft(self, session: AsyncSession, message: Message, ticket: Ticket) -> None:
        links = await session.scalars(select(TgLink).where(TgLink.message_id == message.id))
        for link in links:
            link.ticket_id = ticket.id

    async def _ticket_named_in(self, session: AsyncSession, customer: Customer,
                               bot_text: str | None) -> Ticket | None:
        """The customer's ticket a bot message names ("#12"): the fallback when
        they reply faster than the message's link was written."""
        found = TICKET_NUMBER.search(bot_text or "")
        if found is None:
            return None
        return await session.scalar(select(Ticket).where(
            Ticket.customer_id == customer.id, Ticket.provider == self.provider,
            Ticket.number == found.group(1)))

    async def _is_linked(self, session: AsyncSession, chat_id: int, message_id: int) -> bool:
        found = await session.scalar(
            select(TgLink.id).where(TgLink.tg_chat_id == chat_id,
                                    TgLink.tg_message_id == message_id)
        )
        return found is not None

    async def _ticket_of_tg_message(
        self, session: AsyncSession, chat_id: int, message_id: int
    ) -> Ticket | None:
        ticket_id = await session.scalar(
            select(TgLink.ticket_id).where(TgLink.tg_chat_id == chat_id,
                                           TgLink.tg_message_id == message_id)
        )
        return await session.get(Ticket, ticket_id) if ticket_id else None

    async def _open_tickets(self, session: AsyncSession, customer_id: int) -> list[Ticket]:
        rows = await session.scalars(
            select(Ticket).where(Ticket.customer_id == customer_id,
                                 Ticket.status.in_(OPEN_STATUSES))
            .order_by(Ticket.updated_at.desc())
        )
        return list(rows)

    async def _owned_ticket(
        self, session: AsyncSession, customer: Customer, ticket_id: int
    ) -> Ticket:
        """Ownership is checked here, on the server side: callback data can be forged."""
        ticket = await session.get(Ticket, ticket_id)
        if ticket is None or ticket.customer_id != customer.id:
            raise TicketNotFound()
        return ticket

    async def customer_tickets(self, user: TgUser, page: int) -> Page:
        async with self._sessionmaker.begin() as session:
            customer = await self._customer(session, user)
            total = await session.scalar(
                select(func.count()).select_from(Ticket)
                .where(Ticket.customer_id == customer.id)
            ) or 0
            pages = max(1, -(-total // PAGE_SIZE))
            page = min(max(page, 0), pages - 1)
            rows = await session.scalars(
                select(Ticket).where(Ticket.customer_id == customer.id)
                .order_by((Ticket.status == TicketStatus.CLOSED.value), Ticket.updated_at.desc(),
                          Ticket.id.desc())
                .offset(page * PAGE_SIZE).limit(PAGE_SIZE)
            )
            items = [summarize(t, customer.full_name) for t in rows]
        return Page(items=items, page=page, pages=pages)

    async def customer_ticket(
        self, user: TgUser, ticket_id: int, history: int = 5
    ) -> tuple[TicketSummary, list[HistoryLine]]:
        async with self._sessionmaker.begin() as session:
            customer = await self._customer(session, user)
            ticket = await self._owned_ticket(session, customer, ticket_id)
            customer.selected_ticket_id = ticket.id
            rows = list(await session.scalars(
                select(Message).where(Message.ticket_id == ticket.id,
                                      Message.author_kind.in_(("customer", "agent", "system")))
                .order_by(Message.id.desc()).limit(history)
            ))
            counts = await self._file_counts(session, [m.id for m in rows])
            lines = [
                HistoryLine(m.author_kind, m.author_name, m.text, m.created_at,
                            counts.get(m.id, 0))
                for m in reversed(rows)
            ]
            return summarize(ticket, customer.full_name), lines

    async def _file_counts(self, session: AsyncSession, message_ids: list[int]) -> dict[int, int]:
        if not message_ids:
            return {}
        rows = await session.execute(
            select(Attachment.message_id, func.count()).where(
                Attachment.message_id.in_(message_ids)).group_by(Attachment.message_id)
        )
        return {message_id: count for message_id, count in rows}

    async def customer_set_status(self, user: TgUser, ticket_id: int, status: TicketStatus
                                  ) -> TicketSummary:
        self.require(Capability.CLOSE_REOPEN)
        async with self._sessionmaker.begin() as session:
            customer = await self._customer(session, user)
            ticket = await self._owned_ticket(session, customer, ticket_id)
            if ticket.status != status:
                self._change_status(session, ticket, status, actor_agent=None,
                                    by_customer=True)
            summary = summarize(ticket, customer.full_name)
        self._signal.notify()
        return summary

    # ------------------------------------------------------------ agent side

    async def ticket_for_agent_message(
        self, chat_id: int, thread_id: int | None, reply_to: int | None, *, forum: bool,
        reply_text: str | None = None,
    ) -> int | None:
        """Which ticket an agent's message in the agent chat belongs to: its
        forum topic, or (without topics) the ticket message it replies to.

        The bot's ticket messages start with `#<number>`; that tag is the
        fallback when the replied-to message has no link (yet): its link is
        written just after Telegram accepted it, and an agent may be faster."""
        async with self._sessionmaker() as session:
            if forum and thread_id is not None:
                ticket_id = await session.scalar(
                    select(Ticket.id).where(Ticket.tg_topic_id == thread_id)
                )
                if ticket_id is not None:
                    return ticket_id
            if reply_to is not None:
                ticket_id = await session.scalar(
                    select(TgLink.ticket_id).where(TgLink.tg_chat_id == chat_id,
                                                   TgLink.tg_message_id == reply_to)
                )
                if ticket_id is not None:
                    return ticket_id
            tag = TICKET_TAG.match(reply_text or "")
            if tag is not None:
                return await session.scalar(
                    select(Ticket.id).where(Ticket.provider == self.provider,
                                            Ticket.number == tag.group(1)))
        return None

    async def agent_message(
        self, user: TgUser, ticket_id: int, incoming: IncomingMessage, *, note: bool
    ) -> Outcome:
        """An agent's reply (to the customer) or internal note (never to the customer)."""
        self.require(Capability.NOTES if note else Capability.REPLY_AS_AGENT)
        if not note and incoming.files:
            self.require(Capability.ATTACHMENTS)
        try:
            async with self._sessionmaker.begin() as session:
                if await self._is_linked(session, incoming.tg_chat_id, incoming.tg_message_id):
                    return Outcome.DUPLICATE
                agent = await self._agent(session, user)
                ticket = await self._ticket(session, ticket_id)
                message = Message(
                    ticket_id=ticket.id, author_kind="note" if note else "agent",
                    author_name=agent.full_name, agent_id=agent.id,
                    text=incoming.text, html=incoming.html,
                )
                session.add(message)
                await session.flush()
                await self._add_files(session, message, incoming)
                await self._link(session, incoming, message)
                ticket.updated_at = utcnow()
                enqueue(session, Kind.POST_MESSAGE, provider_lane(ticket.id),
                        {"message_id": message.id}, key=f"post:{message.id}")
                if not note:
                    if ticket.first_reply_at is None:
                        ticket.first_reply_at = utcnow()
                    if sla.agent_replied(ticket):
                        refresh_card(session, ticket.id)
                    enqueue(session, Kind.CUSTOMER_MESSAGE, customer_lane(ticket.customer_id),
                            {"message_id": message.id}, key=f"deliver:{message.id}")
        except IntegrityError:
            return Outcome.DUPLICATE
        self._signal.notify()
        return Outcome.APPENDED

    async def _ticket(self, session: AsyncSession, ticket_id: int) -> Ticket:
        ticket = await session.get(Ticket, ticket_id)
        if ticket is None:
            raise TicketNotFound()
        return ticket

    async def take(self, user: TgUser, ticket_id: int) -> TicketSummary:
        return await self._assign(user, ticket_id, target=None)

    async def assign(self, user: TgUser, ticket_id: int, username: str) -> TicketSummary:
        return await self._assign(user, ticket_id, target=username.lstrip("@"))

    async def _assign(self, user: TgUser, ticket_id: int, target: str | None) -> TicketSummary:
        self.require(Capability.ASSIGN)
        async with self._sessionmaker.begin() as session:
            actor = await self._agent(session, user)
            if target is None:
                assignee = actor
            else:
                found = await session.scalar(
                    select(Agent).where(func.lower(Agent.username) == target.lower())
                )
                if found is None:
                    raise UserFacingError("agent.unknown_agent", username=target)
                assignee = found
            ticket = await self._ticket(session, ticket_id)
            if ticket.assignee_agent_id != assignee.id:
                ticket.assignee_agent_id = assignee.id
                ticket.assignee_name = assignee.full_name
                ticket.updated_at = utcnow()
                enqueue(session, Kind.UPDATE_TICKET, provider_lane(ticket.id),
                        {"ticket_id": ticket.id, "assignee_agent_id": assignee.id,
                         "actor_agent_id": actor.id})
                refresh_card(session, ticket.id)
                enqueue(session, Kind.AGENT_NOTICE, agent_lane(ticket.id),
                        {"ticket_id": ticket.id, "key": "agent.assigned",
                         "params": {"agent": assignee.full_name, "by": actor.full_name}})
            summary = summarize(ticket, "")
        self._signal.notify()
        return summary

    async def set_status(self, user: TgUser, ticket_id: int, status: TicketStatus
                         ) -> TicketSummary:
        self.require(Capability.CLOSE_REOPEN)
        async with self._sessionmaker.begin() as session:
            actor = await self._agent(session, user)
            ticket = await self._ticket(session, ticket_id)
            if ticket.status != status:
                self._change_status(session, ticket, status, actor_agent=actor)
            summary = summarize(ticket, "")
        self._signal.notify()
        return summary

    def _change_status(
        self, session: AsyncSession, ticket: Ticket, status: TicketStatus, *,
        actor_agent: Agent | None, by_customer: bool = False,
    ) -> None:
        ticket.status = status.value
        ticket.updated_at = utcnow()
        ticket.closed_at = utcnow() if status == TicketStatus.CLOSED else None
        sla.status_changed(ticket, status, self._sla, utcnow())
        enqueue(session, Kind.UPDATE_TICKET, provider_lane(ticket.id),
                {"ticket_id": ticket.id, "status": status.value,
                 "actor_agent_id": actor_agent.id if actor_agent else None})
        notify_status(session, ticket, status,
                            by=actor_agent.full_name if actor_agent else None,
                            by_customer=by_customer)

    async def set_priority(self, user: TgUser, ticket_id: int, priority: Priority
                           ) -> TicketSummary:
        self.require(Capability.PRIORITY)
        async with self._sessionmaker.begin() as session:
            actor = await self._agent(session, user)
            ticket = await self._ticket(session, ticket_id)
            if ticket.priority != priority:
                ticket.priority = priority.value
                ticket.updated_at = utcnow()
                enqueue(session, Kind.UPDATE_TICKET, provider_lane(ticket.id),
                        {"ticket_id": ticket.id, "priority": priority.value,
                         "actor_agent_id": actor.id})
                refresh_card(session, ticket.id)
            summary = summarize(ticket, "")
        self._signal.notify()
        return summary

    async def link_agent(self, user: TgUser, login: str, secret: str | None = None) -> str:
        """Map the agent to their helpdesk account (checked at the provider;
        a password, where the provider needs one, is passed on, never kept)."""
        self.require(Capability.AGENT_ACCOUNTS)
        identity = await self._bridge.find_agent(login, secret)
        if identity is None:
            raise UserFacingError("agent.link_not_found", login=login)
        async with self._sessionmaker.begin() as session:
            agent = await self._agent(session, user)
            agent.remote_agent_id = identity.remote_agent_id
            agent.remote_login = login
        return identity.full_name

    async def refer(self, user: TgUser, ticket_id: int, target: str) -> TicketSummary:
        """Hand the ticket to another department or person at the helpdesk."""
        self.require(Capability.REFER)
        async with self._sessionmaker.begin() as session:
            actor = await self._agent(session, user)
            ticket = await self._ticket(session, ticket_id)
            enqueue(session, Kind.REFER, provider_lane(ticket.id),
                    {"ticket_id": ticket.id, "target": target, "actor_agent_id": actor.id})
            enqueue(session, Kind.AGENT_NOTICE, agent_lane(ticket.id),
                    {"ticket_id": ticket.id, "key": "agent.referred",
                     "params": {"target": target, "by": actor.full_name}})
            summary = summarize(ticket, "")
        self._signal.notify()
        return summary

    async def ticket_summary(self, ticket_id: int) -> TicketSummary:
        async with self._sessionmaker() as session:
            ticket = await self._ticket(session, ticket_id)
            customer = await session.get(Customer, ticket.customer_id)
            return summarize(ticket, customer.full_name if customer else "")

    async def queue(self, limit: int = 30) -> list[TicketSummary]:
        async with self._sessionmaker() as session:
            rows = await session.execute(
                select(Ticket, Customer.full_name).join(Customer)
                .where(Ticket.status.in_(OPEN_STATUSES))
                .order_by(Ticket.updated_at).limit(limit)
            )
            return [summarize(ticket, name) for ticket, name in rows]


def notify_status(
    session: AsyncSession, ticket: Ticket, status: TicketStatus, *,
    by: str | None, by_customer: bool = False,
) -> None:
    """Tell both sides about a status change (also used by the poller).

    "Waiting for the customer" is what a helpdesk sets with every answer: the
    answer itself tells the customer, so only the card shows it."""
    refresh_card(session, ticket.id)
    if status == TicketStatus.WAITING and by is None:
        return
    who = "customer" if by_customer else "agent" if by else "helpdesk"
    enqueue(session, Kind.AGENT_NOTICE, agent_lane(ticket.id),
            {"ticket_id": ticket.id, "key": f"agent.status_{status.value}_{who}",
             "params": {"by": by or ""}})
    if not by_customer:
        enqueue(session, Kind.CUSTOMER_NOTICE, customer_lane(ticket.customer_id),
                {"ticket_id": ticket.id, "key": f"customer.status_{status.value}"})
