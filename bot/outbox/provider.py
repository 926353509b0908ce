"""Outbox rows toward the helpdesk: create a ticket, post a message, update
or refer a ticket. Each call carries the row's idempotency key."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from bot.db.models import Agent, Attachment, Customer, Message, OutboxItem, Ticket, utcnow
from bot.outbox.decisions import NotReady
from bot.outbox.outcome import KindHandler, Outcome
from bot.outbox.payloads import CreateTicket, Kind, MessageRef, Refer, UpdateTicket
from bot.outbox.queue import refresh_card
from bot.outbox.store import OutboxStore
from bot.outbox.telegram import load_message, load_ticket
from bot.services.identity import agent_identity, customer_identity
from bridges import base

BOT_API_DOWNLOAD_LIMIT = 20 * 1024 * 1024  # getFile refuses larger files
TOO_BIG_NOTE = "over Telegram's 20 MB download limit, only in the Telegram chat"


class ProviderDeliveries:
    def __init__(self, store: OutboxStore, bridge: base.HelpdeskBridge, bot: Bot) -> None:
        self._sm = store.sessionmaker
        self._bridge = bridge
        self._bot = bot

    def handlers(self) -> dict[Kind, KindHandler]:
        return {
            Kind.CREATE_TICKET: self.create_ticket,
            Kind.POST_MESSAGE: self.post_message,
            Kind.UPDATE_TICKET: self.update_ticket,
            Kind.REFER: self.refer,
        }

    async def create_ticket(self, row: OutboxItem, payload: CreateTicket) -> Outcome:
        async with self._sm() as session:
            ticket, customer = await load_ticket(session, payload.ticket_id)
            if ticket.remote_ticket_id is not None:
                return Outcome()
            message, files = await load_message(session, payload.message_id)
        attachments, text = await self._provider_files(files, message.text)
        remote = await self._bridge.create_ticket(base.NewTicket(
            customer=customer_identity(customer),
            subject=ticket.subject,
            text=text,
            attachments=attachments,
            priority=base.Priority(ticket.priority),
            department_id=ticket.department_id,
            idempotency_key=row.idempotency_key,
        ))

        def apply(session: AsyncSession) -> Any:
            return session.execute(
                update(Ticket).where(Ticket.id == ticket.id).values(
                    remote_ticket_id=remote.remote_ticket_id, number=remote.number,
                    remote_url=remote.url)
            )

        outcome = Outcome(apply=[apply])
        if remote.remote_customer_id and remote.remote_customer_id != customer.remote_customer_id:
            outcome.apply.append(lambda session: session.execute(
                update(Customer).where(Customer.id == customer.id)
                .values(remote_customer_id=remote.remote_customer_id)))
        return outcome

    async def post_message(self, row: OutboxItem, payload: MessageRef) -> Outcome:
        async with self._sm() as session:
            message, files = await load_message(session, payload.message_id)
            if message.ticket_id is None:
                return Outcome()  # a draft: placing it enqueues its own post
            ticket, customer = await load_ticket(session, message.ticket_id)
        if message.remote_message_id is not None:
            return Outcome()
        if ticket.remote_ticket_id is None:
            raise NotReady()
        key = row.idempotency_key
        if message.author_kind == "customer":
            attachments, text = await self._provider_files(files, message.text)
            remote = await self._bridge.post_customer_message(
                ticket.remote_ticket_id, customer_identity(customer), text, attachments,
                idempotency_key=key)
        elif message.author_kind == "note":
            remote = await self._bridge.post_note(
                ticket.remote_ticket_id, await self._agent_identity(message.agent_id,
                                                                    message.author_name),
                message.text, idempotency_key=key)
        else:
            attachments, text = await self._provider_files(files, message.text)
            remote = await self._bridge.post_agent_reply(
                ticket.remote_ticket_id, await self._agent_identity(message.agent_id,
                                                                    message.author_name),
                text, attachments, idempotency_key=key)

        def apply(session: AsyncSession) -> Any:
            adopted = aliased(Message)  # the poller may have adopted it already
            return session.execute(
                update(Message)
                .where(Message.id == message.id,
                       ~select(adopted.id).where(
                           adopted.ticket_id == message.ticket_id,
                           adopted.remote_message_id == remote.remote_message_id).exists())
                .values(remote_message_id=remote.remote_message_id))

        return Outcome(apply=[apply])

    async def update_ticket(self, row: OutboxItem, payload: UpdateTicket) -> Outcome:
        remote_id = await self._remote_ticket_id(payload.ticket_id)
        assignee = None
        if payload.assignee_agent_id:
            assignee = await self._agent_identity(payload.assignee_agent_id, None)
        actor = (await self._agent_identity(payload.actor_agent_id, None)
                 if payload.actor_agent_id else None)
        await self._bridge.update_ticket(
            remote_id,
            base.TicketUpdate(
                status=base.TicketStatus(payload.status) if payload.status else None,
                priority=base.Priority(payload.priority) if payload.priority else None,
                assignee=assignee,
                unassign=payload.unassign,
            ),
            actor=actor,
            idempotency_key=row.idempotency_key,
        )
        return Outcome()

    async def refer(self, row: OutboxItem, payload: Refer) -> Outcome:
        remote_id = await self._remote_ticket_id(payload.ticket_id)
        actor = await self._agent_identity(payload.actor_agent_id, None)
        remote = await self._bridge.refer(remote_id, payload.target, actor)

        def apply(session: AsyncSession) -> Any:
            return session.execute(update(Ticket).where(Ticket.id == payload.ticket_id).values(
                assignee_name=remote.assignee_name, assignee_agent_id=None,
                status=remote.status.value, updated_at=utcnow()))

        async def show_on_card(session: AsyncSession) -> None:
            refresh_card(session, payload.ticket_id)

        return Outcome(apply=[apply, show_on_card])

    async def _remote_ticket_id(self, ticket_id: int) -> str:
        async with self._sm() as session:
            ticket, _ = await load_ticket(session, ticket_id)
        if ticket.remote_ticket_id is None:
            raise NotReady()
        return ticket.remote_ticket_id

    async def _agent_identity(self, agent_id: int | None, fallback_name: str | None
                              ) -> base.AgentIdentity:
        async with self._sm() as session:
            agent = await session.get(Agent, agent_id) if agent_id else None
        return agent_identity(agent, fallback_name)

    async def _provider_files(self, files: Sequence[Attachment], text: str
                              ) -> tuple[list[base.Attachment], str]:
        """The files as the provider takes them, and the text to send with
        them: a file the Bot API will not hand out (over 20 MB) stays in
        Telegram, and the text says so instead of the message failing."""
        uploads = self._bridge.uploads_files
        result = []
        for file in files:
            data = None
            if uploads and file.tg_file_id:
                data = await self._download_from_telegram(file)
                if data is None:
                    text = f"{text}\n[{file.file_name}: {TOO_BIG_NOTE}]".strip()
                    continue
            result.append(base.Attachment(
                file_name=file.file_name, mime_type=file.mime_type, size=file.size,
                kind=file.kind, ref=file.tg_file_id, url=file.remote_url, data=data))
        return result, text

    async def _download_from_telegram(self, file: Attachment) -> bytes | None:
        """The file's bytes, or None when it is over the Bot API's download limit."""
        assert file.tg_file_id is not None
        if file.size is not None and file.size > BOT_API_DOWNLOAD_LIMIT:
            return None
        try:
            buffer = await self._bot.download(file.tg_file_id)
        except TelegramBadRequest as exc:
            if "too big" in str(exc):
                return None
            raise
        assert buffer is not None
        return buffer.read()
