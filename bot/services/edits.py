"""A customer edits a message they sent: the agents see the new text.

The stored message takes the new text (so the history, a pending post to the
helpdesk and a pending mirror all carry it); the bot's copy in the agent chat
is edited (EDIT_MIRROR, delivered in the ticket's agent lane, after the
mirror itself), or the card when it is the ticket's opening message; and
where the helpdesk already has the old text and the provider has notes, a
note says what changed, since the provider contract cannot edit a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.models import Attachment, Customer, Message, OutboxItem, TgLink, Ticket, utcnow
from bot.i18n import gettext
from bot.outbox import (
    Kind,
    OutboxSignal,
    agent_lane,
    customer_lane,
    enqueue,
    provider_lane,
    refresh_card,
)
from bot.services import render
from bot.services.types import IncomingMessage
from bridges.base import Capability, HelpdeskBridge

MERGE_LOOKAHEAD = 50  # as many as the dispatcher merges into one mirror


class EditService:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], bridge: HelpdeskBridge,
                 signal: OutboxSignal, *, agent_language: str) -> None:
        self._sm = sessionmaker
        self._bridge = bridge
        self._signal = signal
        self._lang = agent_language

    async def customer_edited(self, incoming: IncomingMessage,
                              edited_at: datetime | None = None) -> bool:
        """True when the edit changed a stored customer message."""
        async with self._sm.begin() as session:
            message = await session.scalar(
                select(Message).join(TgLink, TgLink.message_id == Message.id).where(
                    TgLink.tg_chat_id == incoming.tg_chat_id,
                    TgLink.tg_message_id == incoming.tg_message_id,
                    TgLink.direction == "in"))
            if message is None or message.author_kind != "customer":
                return False  # a command, or a message the bot never kept
            if (message.text, message.html) == (incoming.text, incoming.html):
                return False  # the same edit handed out again
            if message.parts > 1:
                # Flood control merged several Telegram messages into this one:
                # which part changed cannot be told, so the agents get the new text.
                if message.ticket_id is not None and incoming.text:
                    enqueue(session, Kind.AGENT_NOTICE, agent_lane(message.ticket_id),
                            {"ticket_id": message.ticket_id, "key": "agent.flood_part_edited",
                             "params": {"text": incoming.text[:3000]}})
                    self._signal.notify()
                return bool(incoming.text)
            old_text = message.text
            message.text = incoming.text
            message.html = incoming.html
            message.edited_at = edited_at or utcnow()
            if message.ticket_id is None:
                return True  # a draft: it goes out with the new text when placed
            ticket = await session.get(Ticket, message.ticket_id)
            assert ticket is not None
            opening = await session.scalar(
                select(func.min(Message.id)).where(Message.ticket_id == ticket.id))
            if opening == message.id:
                # The card carries the opening text.
                refresh_card(session, ticket.id)
                posted_key = f"create:{ticket.id}"
            else:
                enqueue(session, Kind.EDIT_MIRROR, agent_lane(ticket.id),
                        {"message_id": message.id})
                posted_key = f"post:{message.id}"
            if await self._went_out(session, posted_key) and (
                    Capability.NOTES in self._bridge.capabilities):
                note = Message(
                    ticket_id=ticket.id, author_kind="note",
                    author_name=gettext(self._lang, "agent.edit_note_author"),
                    text=gettext(self._lang, "agent.edit_note", old=old_text,
                                 new=incoming.text))
                session.add(note)
                await session.flush()
                enqueue(session, Kind.POST_MESSAGE, provider_lane(ticket.id),
                        {"message_id": note.id}, key=f"post:{note.id}")
        self._signal.notify()
        return True

    async def agent_edited(self, incoming: IncomingMessage,
                           edited_at: datetime | None = None) -> bool:
        """An agent edited their reply (or note) in the ticket's topic: the
        stored message takes the new text; the customer's copy is edited
        (EDIT_CUSTOMER_COPY, in the customer's lane after the copy itself);
        where the helpdesk has the old text already and the provider has
        notes, a note says what changed (the provider contract cannot edit a
        message). A reply not yet posted simply goes out with the new text."""
        async with self._sm.begin() as session:
            message = await session.scalar(
                select(Message).join(TgLink, TgLink.message_id == Message.id).where(
                    TgLink.tg_chat_id == incoming.tg_chat_id,
                    TgLink.tg_message_id == incoming.tg_message_id,
                    TgLink.direction == "in"))
            if message is None or message.author_kind not in ("agent", "note"):
                return False  # agents talking among themselves, or a command
            text = incoming.text
            if message.author_kind == "note" and text.startswith("#"):
                text = text[1:].lstrip()  # the note's mark, as when it was written
            if message.text == text or message.ticket_id is None:
                return False  # the same edit handed out again
            old_text = message.text
            message.text = text
            message.html = incoming.html if text == incoming.text else None
            message.edited_at = edited_at or utcnow()
            ticket = await session.get(Ticket, message.ticket_id)
            assert ticket is not None
            if message.author_kind == "agent":
                enqueue(session, Kind.EDIT_CUSTOMER_COPY, customer_lane(ticket.customer_id),
                        {"message_id": message.id})
            if await self._went_out(session, f"post:{message.id}") and (
                    Capability.NOTES in self._bridge.capabilities):
                key = "agent.agent_edit_note" if message.author_kind == "agent" else (
                    "agent.note_edit_note")
                note = Message(
                    ticket_id=ticket.id, author_kind="note", author_name=message.author_name,
                    agent_id=message.agent_id,
                    text=gettext(self._lang, key, old=old_text, new=text))
                session.add(note)
                await session.flush()
                enqueue(session, Kind.POST_MESSAGE, provider_lane(ticket.id),
                        {"message_id": note.id}, key=f"post:{note.id}")
        self._signal.notify()
        return True

    @staticmethod
    async def _went_out(session: AsyncSession, key: str) -> bool:
        """Whether the helpdesk has (or may have) the old text already."""
        status = await session.scalar(
            select(OutboxItem.status).where(OutboxItem.idempotency_key == key))
        return status is not None and status != "pending"


@dataclass(frozen=True, slots=True)
class CopyEdit:
    """What the dispatcher does for an EDIT_CUSTOMER_COPY row: edit
    `tg_message_id` in the customer's chat to `html`, or (None: the copy is
    several messages or has files) send `fallback_html`."""

    ticket_id: int
    chat_id: int
    tg_message_id: int | None
    html: str
    fallback_html: str


async def plan_customer_copy_edit(sm: async_sessionmaker[AsyncSession], message_id: int
                                  ) -> CopyEdit | None:
    async with sm() as session:
        message = await session.get(Message, message_id)
        if message is None or message.ticket_id is None:
            return None
        ticket = await session.get(Ticket, message.ticket_id)
        customer = await session.get(Customer, ticket.customer_id) if ticket else None
        if ticket is None or customer is None:
            return None
        lang = customer.language
        html = render.to_customer(message, ticket, lang) + "\n<i>✏️ " + gettext(
            lang, "customer.edited_label") + "</i>"
        fallback = "✏️ " + gettext(lang, "customer.agent_edited",
                                   name=render.escape(message.author_name or ""),
                                   number=render.escape(render.number(ticket)),
                                   text=render.body_html(message))
        copies = list(await session.scalars(_copies(message.id, customer.tg_user_id)))
        has_files = await session.scalar(
            select(Attachment.id).where(Attachment.message_id == message.id).limit(1))
        if len(copies) != 1 or has_files is not None or len(render.split_text(html)) > 1:
            return CopyEdit(ticket.id, customer.tg_user_id, None, "", fallback)
        return CopyEdit(ticket.id, customer.tg_user_id, copies[0], html, fallback)


@dataclass(frozen=True, slots=True)
class MirrorEdit:
    """What the dispatcher does for an EDIT_MIRROR row: edit `tg_message_id` to
    `html`, or (None: no single text copy to edit) post `fallback_html`."""

    ticket_id: int
    tg_message_id: int | None
    html: str
    fallback_html: str


async def plan_mirror_edit(sm: async_sessionmaker[AsyncSession], message_id: int, *,
                           chat_id: int, forum: bool, lang: str) -> MirrorEdit | None:
    """The bot's copy of a customer message in the agent chat and its new text.

    The copy is edited in place when it is one text message: a message sent
    in several parts, or one with files, gets the new text as a new message
    instead. When the dispatcher merged later mirrors into this copy (a busy
    group), those texts are rendered again after it, as they were sent."""
    async with sm() as session:
        message = await session.get(Message, message_id)
        if message is None or message.ticket_id is None:
            return None
        ticket = await session.get(Ticket, message.ticket_id)
        if ticket is None:
            return None
        tag = None if forum else f"#{render.number(ticket)}"
        fallback = "✏️ " + gettext(lang, "agent.edited_message",
                                   name=render.escape(message.author_name or ""),
                                   text=render.body_html(message))
        if not forum:
            fallback = f"#{render.escape(render.number(ticket))} · {fallback}"
        copies = list(await session.scalars(_copies(message.id, chat_id)))
        has_files = await session.scalar(
            select(Attachment.id).where(Attachment.message_id == message.id).limit(1))
        if len(copies) != 1 or has_files is not None:
            return MirrorEdit(ticket.id, None, "", fallback)
        followers = await _merged_followers(session, message, chat_id)
        texts = [render.mirror(message, lang, ticket_tag=tag)]
        texts += [render.mirror(other, lang) for other in followers or ()]
        html = "\n\n".join(texts)
        if followers is None or len(render.split_text(html)) > 1:
            return MirrorEdit(ticket.id, None, "", fallback)
        return MirrorEdit(ticket.id, copies[0], html, fallback)


def _copies(message_id: int, chat_id: int) -> Select[int]:
    return (select(TgLink.tg_message_id)
            .where(TgLink.message_id == message_id, TgLink.tg_chat_id == chat_id,
                   TgLink.direction == "out")
            .order_by(TgLink.tg_message_id))


async def _merged_followers(session: AsyncSession, head: Message, chat_id: int
                            ) -> list[Message] | None:
    """Later text-only messages whose mirror was delivered inside the head's
    copy: their mirror row is done and they have no copy of their own. None
    when that cannot be told any more (housekeeping removed the rows)."""
    later = await session.scalars(
        select(Message).where(Message.ticket_id == head.ticket_id, Message.id > head.id)
        .order_by(Message.id).limit(MERGE_LOOKAHEAD))
    followers: list[Message] = []
    for other in later:
        mirror_status = await session.scalar(select(OutboxItem.status).where(
            OutboxItem.idempotency_key == f"mirror:{other.id}"))
        if mirror_status is None:
            if other.author_kind == "note" or await session.scalar(
                    select(TgLink.id).where(TgLink.message_id == other.id,
                                            TgLink.direction == "in").limit(1)):
                continue  # never mirrored: written in the topic, or the bot's own note
            return None
        own_copy = await session.scalar(_copies(other.id, chat_id).limit(1))
        has_files = await session.scalar(
            select(Attachment.id).where(Attachment.message_id == other.id).limit(1))
        if mirror_status != "done" or own_copy is not None or has_files is not None:
            break
        followers.append(other)
    return followers
