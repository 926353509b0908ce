"""Polling the provider: changes since the cursor → deduplicated import →
outbox rows → the new cursor, all in one transaction.

Deduplication rests on the database: a message is known by
(ticket, remote_message_id); one the bridge itself posted is recognised by the
idempotency key the provider echoed (`origin_key`), or, for providers that
echo nothing, adopted by its text from the bot's own not-yet-matched message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.models import (
    Attachment,
    Customer,
    Message,
    OutboxItem,
    PollCursor,
    Ticket,
    utcnow,
)
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
from bot.services.formatting import helpdesk_html_to_telegram
from bot.services.sla import SlaPolicy
from bot.services.tickets import notify_status
from bot.telegram.pacer import SendPriority
from bridges import base

log = logging.getLogger("deskbridge.sync")

# Keys the bot gives provider calls (see bot.services.tickets and delivery).
_OWN_KEY_PREFIXES = ("post:", "create:", "provider.update_ticket:", "provider.refer:")
IMPORT_CHUNK = 50  # events per transaction when importing a poll
FIRST_IMPORT_CHUNK = 10  # a smaller first one: the first replies leave sooner


@dataclass(frozen=True, slots=True)
class PollReport:
    events: int
    imported: int
    more: bool


class SyncService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        bridge: base.HelpdeskBridge,
        signal: OutboxSignal,
        *,
        provider: str,
        sla_policy: SlaPolicy | None = None,
    ) -> None:
        self._sm = sessionmaker
        self._bridge = bridge
        self._signal = signal
        self.provider = provider
        self._sla = sla_policy or SlaPolicy()
        self.last_success_at: datetime | None = None

    async def poll_once(self) -> PollReport:
        async with self._sm() as session:
            state = await session.get(PollCursor, self.provider)
            cursor = state.cursor if state else None
        try:
            changes = await self._bridge.fetch_changes(cursor)
        except Exception as exc:
            await self._record_error(exc)
            raise
        # Committed a chunk at a time, so that the first replies of a big batch
        # are on their way while the rest is imported. The cursor moves with
        # the last chunk: a crash in between imports the batch again, and the
        # unique (ticket, remote message) key makes the repeats no-ops.
        imported = 0
        events = changes.events
        start = 0
        while True:
            end = start + (FIRST_IMPORT_CHUNK if start == 0 else IMPORT_CHUNK)
            async with self._sm.begin() as session:
                for event in events[start:end]:
                    try:
                        async with session.begin_nested():
                            imported += await self._import(session, event)
                    except Exception:
                        # A malformed event must not stop the poller: log it, skip it.
                        log.exception("skipping an event the bot could not import: %r", event)
                if end >= len(events):
                    await self._advance(session, changes.cursor)
            if imported:
                self._signal.notify()
            if end >= len(events):
                break
            start = end
        self.last_success_at = utcnow()
        return PollReport(events=len(events), imported=imported, more=changes.more)

    async def _cursor_row(self, session: AsyncSession) -> PollCursor:
        state = await session.get(PollCursor, self.provider)
        if state is None:
            state = PollCursor(provider=self.provider)
            session.add(state)
        return state

    async def _advance(self, session: AsyncSession, cursor: str | None) -> None:
        state = await self._cursor_row(session)
        state.cursor = cursor
        state.last_success_at = utcnow()
        state.last_error = None
        state.updated_at = utcnow()

    async def _record_error(self, exc: Exception) -> None:
        async with self._sm.begin() as session:
            state = await self._cursor_row(session)
            state.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            state.updated_at = utcnow()

    async def _import(self, session: AsyncSession, event: base.ChangeEvent) -> int:
        if isinstance(event, base.MessageAdded):
            return await self._import_message(session, event.message)
        return await self._import_ticket(session, event)

    async def _ticket(self, session: AsyncSession, remote_ticket_id: str) -> Ticket | None:
        return await session.scalar(select(Ticket).where(
            Ticket.provider == self.provider, Ticket.remote_ticket_id == remote_ticket_id))

    async def _import_message(self, session: AsyncSession, remote: base.RemoteMessage) -> int:
        if remote.origin_key and remote.origin_key.startswith("post:"):
            # The echo of our own post (every customer message comes back so):
            # once its result is recorded there is nothing to look up.
            own = await session.get(Message, int(remote.origin_key.removeprefix("post:")))
            if own is not None and own.remote_message_id == remote.remote_message_id:
                return 0
        ticket = await self._ticket(session, remote.remote_ticket_id)
        if ticket is None:
            return 0  # not a conversation this bot bridges
        known = await session.scalar(select(Message.id).where(
            Message.ticket_id == ticket.id,
            Message.remote_message_id == remote.remote_message_id))
        if known is not None:
            return 0
        own = await self._own_message(session, ticket, remote)
        if own is not None:
            own.remote_message_id = remote.remote_message_id
            return 0
        if remote.origin_key and remote.origin_key.startswith(_OWN_KEY_PREFIXES):
            return 0  # ours, e.g. the opening message of a ticket we created
        html = helpdesk_html_to_telegram(remote.html) if remote.html else None
        author_name = remote.author_name
        if author_name is None and remote.author_kind == base.AuthorKind.CUSTOMER:
            # e.g. the customer answered the helpdesk's e-mail: it names no one
            customer = await session.get(Customer, ticket.customer_id)
            author_name = customer.full_name if customer else None
        message = Message(
            ticket_id=ticket.id, customer_id=ticket.customer_id,
            author_kind=remote.author_kind.value, author_name=author_name,
            text=remote.text, html=html, remote_message_id=remote.remote_message_id,
        )
        session.add(message)
        await session.flush()
        for file in remote.attachments:
            session.add(Attachment(
                message_id=message.id, kind=file.kind, file_name=file.file_name,
                mime_type=file.mime_type, size=file.size, remote_url=file.url,
                remote_ref=file.ref,
                # A desk that keeps the bot's own file handle: reuse it.
                tg_file_id=self._bridge.own_file(file),
            ))
        ticket.updated_at = utcnow()
        enqueue(session, Kind.MIRROR, agent_lane(ticket.id), {"message_id": message.id},
                key=f"mirror:{message.id}",
                priority=(SendPriority.CUSTOMER if remote.author_kind == base.AuthorKind.CUSTOMER
                          else SendPriority.HELPDESK))
        waits_changed = (
            sla.customer_wrote(ticket, self._sla, utcnow())
            if remote.author_kind == base.AuthorKind.CUSTOMER
            else sla.agent_replied(ticket) if remote.author_kind == base.AuthorKind.AGENT
            else False)
        if waits_changed:
            refresh_card(session, ticket.id)
        if remote.author_kind in (base.AuthorKind.AGENT, base.AuthorKind.SYSTEM):
            if ticket.first_reply_at is None and remote.author_kind == base.AuthorKind.AGENT:
                ticket.first_reply_at = utcnow()
            enqueue(session, Kind.CUSTOMER_MESSAGE, customer_lane(ticket.customer_id),
                    {"message_id": message.id}, key=f"deliver:{message.id}")
        return 1

    async def _own_message(self, session: AsyncSession, ticket: Ticket,
                           remote: base.RemoteMessage) -> Message | None:
        if remote.origin_key and remote.origin_key.startswith("post:"):
            message_id = int(remote.origin_key.removeprefix("post:"))
            own = await session.get(Message, message_id)
            return own if own is not None and own.remote_message_id is None else None
        if remote.origin_key and remote.origin_key.startswith("create:"):
            return await session.scalar(
                select(Message).where(Message.ticket_id == ticket.id,
                                      Message.remote_message_id.is_(None))
                .order_by(Message.id).limit(1))
        if remote.origin_key:
            return None
        # No echo: adopt the oldest unmatched message of ours with the same
        # author kind and text (the provider keeps the text we sent).
        candidates = await session.scalars(
            select(Message).where(Message.ticket_id == ticket.id,
                                  Message.remote_message_id.is_(None),
                                  Message.author_kind == remote.author_kind.value)
            .order_by(Message.id).limit(20))
        wanted = _normalise(remote.text)
        return next((m for m in candidates if _normalise(m.text) == wanted), None)

    async def _import_ticket(self, session: AsyncSession, event: base.TicketChanged) -> int:
        """Bring the ticket's fields in line with the helpdesk. A change the
        bot itself caused is applied silently (both sides were told when it
        was made); any other change is announced to the agents, and a status
        change to the customer too."""
        remote = event.ticket
        ticket = await self._ticket(session, remote.remote_ticket_id)
        if ticket is None:
            return 0
        own = bool(event.origin_key and event.origin_key.startswith(_OWN_KEY_PREFIXES))
        if await _pending_provider_rows(session, ticket.id):
            # Our own change is still on its way to the helpdesk: the bot's
            # state is ahead of what the helpdesk reported; its later event wins.
            return 0
        changed = False
        if remote.status.value != ticket.status:
            ticket.status = remote.status.value
            ticket.closed_at = utcnow() if remote.status == base.TicketStatus.CLOSED else None
            sla.status_changed(ticket, remote.status, self._sla, utcnow())
            if not own:
                notify_status(session, ticket, remote.status, by=None)
            changed = True
        if remote.priority.value != ticket.priority:
            ticket.priority = remote.priority.value
            changed = True
        if remote.assignee_name != ticket.assignee_name:
            ticket.assignee_name = remote.assignee_name
            if not own:  # someone else took it in the helpdesk
                ticket.assignee_agent_id = None
            changed = True
        if changed:
            ticket.updated_at = utcnow()
            refresh_card(session, ticket.id)
        return int(changed and not own)


async def _pending_provider_rows(session: AsyncSession, ticket_id: int) -> int:
    return await session.scalar(
        select(func.count()).select_from(OutboxItem).where(
            OutboxItem.lane == provider_lane(ticket_id),
            OutboxItem.status.in_(("pending", "in_flight")),
            OutboxItem.kind.in_((Kind.UPDATE_TICKET.value, Kind.CREATE_TICKET.value,
                                 Kind.REFER.value)))) or 0


def _normalise(text: str) -> str:
    return " ".join(text.split())
