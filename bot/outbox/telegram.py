"""Outbox rows toward Telegram: the agent chat (topics, cards, mirrors,
notices) and customers' private chats.

Every call here goes through the session's one send path
(bot.telegram.session), which paces it with the row's priority; a call that
would wait past its patience raises `SendLater` and the row is put back.
A row of several Telegram messages records each as it goes out, so a retry
never repeats one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.types import BufferedInputFile, InlineKeyboardMarkup, ReplyParameters
from aiogram.types import Message as TgMessage
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards
from bot.db.models import Attachment, Customer, Message, OutboxItem, TgLink, Ticket, utcnow
from bot.i18n import gettext
from bot.outbox.decisions import Dead, Deferred, NotReady
from bot.outbox.outcome import KindHandler, Outcome
from bot.outbox.payloads import (
    ChatNotice,
    DeadLetterNotice,
    Kind,
    MessageRef,
    Notice,
    TicketRef,
)
from bot.outbox.queue import (
    LIVE_STATUSES,
    OutboxSignal,
    agent_lane,
    card_lane,
    enqueue,
    refresh_card,
    sync_topic,
)
from bot.outbox.store import OutboxStore
from bot.services import edits, render
from bot.telegram.agent_chat import AgentChat
from bot.telegram.agent_chat_watch import AgentChatWatch
from bot.telegram.pacer import TelegramPacer
from bridges.base import Capabilities

log = logging.getLogger("deskbridge.delivery")

MERGE_LOOKAHEAD = 50
AGENT_CHAT_AWAY_RETRY_SECONDS = 30.0


@dataclass(slots=True)
class Part:
    """One Telegram message of a row; `send` returns None when it had nothing to send."""

    send: Callable[[], Awaitable[TgMessage | None]]
    ticket_id: int | None
    message_id: int | None
    also_done: list[int] = field(default_factory=list)  # merged rows this part carried


class TelegramDeliveries:
    def __init__(self, store: OutboxStore, bot: Bot, pacer: TelegramPacer,
                 watch: AgentChatWatch, capabilities: Capabilities, signal: OutboxSignal, *,
                 file_fetcher: Callable[[str], Awaitable[bytes]] | None = None) -> None:
        self._store = store
        self._sm = store.sessionmaker
        self._bot = bot
        self._pacer = pacer
        self._watch = watch
        self.agent_chat: AgentChat = watch.agent_chat
        self._capabilities = capabilities
        self._signal = signal
        self._fetch_url = file_fetcher

    def handlers(self) -> dict[Kind, KindHandler]:
        agent_chat: dict[Kind, KindHandler] = {
            Kind.MIRROR: self.mirror,
            Kind.CARD: self.card,
            Kind.AGENT_NOTICE: self.agent_notice,
            Kind.EDIT_MIRROR: self.edit_mirror,
            Kind.AGENT_CHAT_NOTICE: self.agent_chat_notice,
            Kind.TOPIC_STATE: self.topic_state,
            Kind.DEAD_LETTER: self.dead_letter,
        }
        return {
            **{kind: self._while_in_agent_chat(handler) for kind, handler in agent_chat.items()},
            Kind.CUSTOMER_MESSAGE: self.customer_message,
            Kind.CUSTOMER_NOTICE: self.customer_notice,
            Kind.EDIT_CUSTOMER_COPY: self.edit_customer_copy,
        }

    def _while_in_agent_chat(self, handler: KindHandler) -> KindHandler:
        """A 403 from the agent chat means the bot was removed (or may not
        post): the row waits, no attempt spent, until the bot is back, and
        customers' work goes on meanwhile (bot.telegram.agent_chat_watch)."""
        async def deliver(row: OutboxItem, payload: Any) -> Outcome:
            try:
                return await handler(row, payload)
            except TelegramForbiddenError as exc:
                await self._watch.unreachable(str(exc))
                raise Deferred(AGENT_CHAT_AWAY_RETRY_SECONDS) from exc

        return deliver

    # ------------------------------------------------------------ agent chat

    async def mirror(self, row: OutboxItem, payload: MessageRef) -> Outcome:
        message, files, ticket, customer = await self._message_context(payload.message_id)
        ticket = await self._ensure_thread(ticket, customer)
        chat_id = self.agent_chat.chat_id
        lang = self.agent_chat.language
        tag = None if self._in_topic(ticket) else f"#{render.number(ticket)}"
        has_text = bool(message.text or message.html)
        parts: list[Part] = []
        if not payload.files_only and (has_text or not files):
            texts = [render.mirror(message, lang, ticket_tag=tag)]
            merged: list[int] = []
            if not files and not payload.parts_done:
                for other_row, other in await self._mergeable_followers(row):
                    candidate = render.mirror(other, lang)
                    if len("\n\n".join([*texts, candidate])) > render.TELEGRAM_TEXT_LIMIT:
                        break
                    texts.append(candidate)
                    merged.append(other_row.id)
            chunks = render.split_text("\n\n".join(texts))
            for index, chunk in enumerate(chunks):
                parts.append(self._text_part(chat_id, chunk, ticket.id, message.id, ticket=ticket,
                                             also_done=merged if index == 0 else None))
        caption = None
        if not payload.files_only and not has_text:
            caption = render.mirror(message, lang, ticket_tag=tag)
        for index, file in enumerate(files):
            parts.append(self._file_part(chat_id, file, caption if index == 0 else None,
                                         ticket.id, message.id, lang,
                                         **self._thread_kwargs(ticket)))
        return await self._send_parts(row, payload.parts_done, parts)

    async def _mergeable_followers(self, head: OutboxItem) -> list[tuple[OutboxItem, Message]]:
        """Consecutive pending text-only mirrors behind `head` in its lane,
        when the group cannot send them one by one right now: merged, they
        keep a busy agent group seconds behind, not minutes."""
        async with self._sm() as session:
            rows = list(await session.scalars(
                select(OutboxItem).where(OutboxItem.lane == head.lane,
                                         OutboxItem.status == "pending",
                                         OutboxItem.id > head.id,
                                         OutboxItem.next_attempt_at <= utcnow())
                .order_by(OutboxItem.id).limit(MERGE_LOOKAHEAD)))
            followers: list[tuple[OutboxItem, Message]] = []
            for row in rows:
                if row.kind != Kind.MIRROR or row.payload.get("files_only"):
                    break
                message = await session.get(Message, row.payload["message_id"])
                has_files = await session.scalar(select(Attachment.id).where(
                    Attachment.message_id == row.payload["message_id"]).limit(1))
                if message is None or has_files is not None:
                    break
                followers.append((row, message))
        if not followers:
            return []
        burst = self._pacer.budget.limits.group_burst
        busy = await self._pacer.budget.peek(self.agent_chat.chat_id) > 0
        return followers if busy or len(followers) + 1 > burst else []

    async def card(self, row: OutboxItem, payload: TicketRef) -> Outcome:
        ticket, customer = await self._load(payload.ticket_id)
        # A refresh before the card exists: the ticket's own lane makes the
        # card; edit it once it is there (never make a second one).
        if (ticket.tg_card_message_id is None and row.lane == card_lane(ticket.id)
                and await self._thread_pending(ticket.id)):
            raise NotReady()
        had_card = ticket.tg_card_message_id is not None
        ticket = await self._ensure_thread(ticket, customer)
        outcome = Outcome(also_done=await self._collapsible(row, Kind.CARD))
        if self._topic_out_of_date(ticket):
            ticket_id = ticket.id
            outcome.apply.append(lambda session: sync_topic(session, ticket_id))
        if not had_card:
            return outcome  # just created, with the current state
        opening = await self._opening_message(ticket.id)
        try:
            await self._bot.edit_message_text(
                text=render.card(ticket, customer, opening, self.agent_chat.language),
                chat_id=self.agent_chat.chat_id, message_id=ticket.tg_card_message_id,
                parse_mode="HTML", reply_markup=self._card_markup(ticket))
        except TelegramBadRequest as exc:
            text = str(exc)
            if "message is not modified" in text:
                return outcome
            if "message to edit not found" in text:
                ticket.tg_card_message_id = None  # deleted by someone: send a new one
                await self._save_ticket_thread(ticket)
                raise Deferred(0.1) from exc
            raise
        return outcome

    def _topic_out_of_date(self, ticket: Ticket) -> bool:
        if not self._in_topic(ticket):
            return False
        return (ticket.tg_topic_status != ticket.status
                or ticket.tg_topic_closed != (ticket.status == "closed")
                or (ticket.tg_card_message_id is not None and not ticket.tg_card_pinned))

    async def topic_state(self, row: OutboxItem, payload: TicketRef) -> Outcome:
        """The topic shows the ticket's state: its name starts with the status
        icon (render.topic_name), it is closed while the ticket is, and the
        card is pinned in it. Each call is paced like any other and recorded
        as it succeeds, so a retry repeats none; queued rows of the lane are
        coalesced (this one brings the topic to the ticket's current state)."""
        outcome = Outcome(also_done=await self._collapsible(row, Kind.TOPIC_STATE))
        ticket, customer = await self._load(payload.ticket_id)
        chat = self.agent_chat
        if not self._in_topic(ticket) or not self._topic_out_of_date(ticket):
            return outcome
        assert ticket.tg_topic_id is not None
        if ticket.tg_card_message_id is not None and not ticket.tg_card_pinned:
            try:
                await self._bot.pin_chat_message(chat.chat_id, ticket.tg_card_message_id,
                                                 disable_notification=True)
            except TelegramBadRequest as exc:
                text = str(exc).lower()
                if "not enough rights" in text or "chat_admin_required" in text:
                    # Without *Pin messages* the card stays at the top of the topic anyway.
                    log.warning("cannot pin the card of ticket %s: %s", ticket.id, exc)
                elif "message to pin not found" not in text:
                    raise
            await self._save_topic(ticket.id, tg_card_pinned=True)
        closed = ticket.status == "closed"
        if ticket.tg_topic_status != ticket.status:
            try:
                await self._bot.edit_forum_topic(chat.chat_id, ticket.tg_topic_id,
                                                 name=render.topic_name(ticket, customer))
            except TelegramBadRequest as exc:
                if "topic_not_modified" not in str(exc).lower():
                    raise
            await self._save_topic(ticket.id, tg_topic_status=ticket.status)
        if ticket.tg_topic_closed != closed:
            if closed and await self._thread_pending(ticket.id):
                # Messages still going to the topic: close it after them.
                raise Deferred(2.0)
            try:
                if closed:
                    await self._bot.close_forum_topic(chat.chat_id, ticket.tg_topic_id)
                else:
                    await self._bot.reopen_forum_topic(chat.chat_id, ticket.tg_topic_id)
            except TelegramBadRequest as exc:
                if "topic_not_modified" not in str(exc).lower():
                    raise
            await self._save_topic(ticket.id, tg_topic_closed=closed)
        return outcome

    async def _save_topic(self, ticket_id: int, **values: Any) -> None:
        async with self._sm.begin() as session:
            await session.execute(update(Ticket).where(Ticket.id == ticket_id).values(**values))

    async def _collapsible(self, head: OutboxItem, kind: Kind) -> list[int]:
        """Pending rows of `kind` right behind `head` in its lane: one delivery serves them."""
        async with self._sm() as session:
            rows = await session.scalars(
                select(OutboxItem).where(OutboxItem.lane == head.lane,
                                         OutboxItem.status == "pending",
                                         OutboxItem.id > head.id)
                .order_by(OutboxItem.id).limit(MERGE_LOOKAHEAD))
            collapsed = []
            for row in rows:
                if row.kind != kind:
                    break
                collapsed.append(row.id)
            return collapsed

    async def _thread_pending(self, ticket_id: int) -> bool:
        async with self._sm() as session:
            return await session.scalar(
                select(OutboxItem.id).where(OutboxItem.lane == agent_lane(ticket_id),
                                            OutboxItem.status.in_(LIVE_STATUSES)).limit(1)
            ) is not None

    async def agent_notice(self, row: OutboxItem, payload: Notice) -> Outcome:
        ticket, customer = await self._load(payload.ticket_id)
        ticket = await self._ensure_thread(ticket, customer)
        lang = self.agent_chat.language
        params = {k: render.escape(str(v)) for k, v in payload.params.items()}
        text = "ℹ️ " + gettext(lang, payload.key, number=render.number(ticket), **params)
        if not self._in_topic(ticket):
            text = f"#{render.escape(render.number(ticket))} · {text}"
        outcome = Outcome()
        outcome.link(await self._send_agent(ticket, text), ticket.id, None)
        return outcome

    async def edit_mirror(self, row: OutboxItem, payload: MessageRef) -> Outcome:
        """The customer edited a message: edit the bot's copy of it in the
        agent chat (bot.services.edits finds it), or post the new text when
        there is no single text copy to edit."""
        chat = self.agent_chat
        plan = await edits.plan_mirror_edit(self._sm, payload.message_id,
                                            chat_id=chat.chat_id, forum=chat.forum,
                                            lang=chat.language)
        if plan is None:
            return Outcome()
        if plan.tg_message_id is not None:
            try:
                await self._bot.edit_message_text(text=plan.html, chat_id=chat.chat_id,
                                                  message_id=plan.tg_message_id,
                                                  parse_mode="HTML")
                return Outcome()
            except TelegramBadRequest as exc:
                if "message is not modified" in str(exc):
                    return Outcome()
                if "message to edit not found" not in str(exc):
                    raise
        ticket, customer = await self._load(plan.ticket_id)
        ticket = await self._ensure_thread(ticket, customer)
        outcome = Outcome()
        outcome.link(await self._send_agent(ticket, plan.fallback_html), ticket.id, None)
        return outcome

    async def dead_letter(self, row: OutboxItem, payload: DeadLetterNotice) -> Outcome:
        """A delivery of this ticket became a dead letter: say what and why,
        in words, with Retry / Discard."""
        ticket, customer = await self._load(payload.ticket_id)
        ticket = await self._ensure_thread(ticket, customer)
        lang = self.agent_chat.language
        text = gettext(lang, "dead.notice", number=render.escape(render.number(ticket)),
                       what=gettext(lang, f"dead.what.{payload.what}"),
                       why=gettext(lang, f"dead.why.{payload.why}"))
        outcome = Outcome()
        outcome.link(await self._send_agent(
            ticket, text, markup=keyboards.dead_letters(lang, [payload.row_id])), ticket.id, None)
        return outcome

    async def agent_chat_notice(self, row: OutboxItem, payload: ChatNotice) -> Outcome:
        """A message to the agent chat itself (the general topic), e.g. the SLA summary."""
        await self._send_html(self.agent_chat.chat_id, payload.html)
        return Outcome()

    # ------------------------------------------------------------ customers

    async def customer_message(self, row: OutboxItem, payload: MessageRef) -> Outcome:
        message, files, ticket, customer = await self._message_context(payload.message_id)
        chat_id = customer.tg_user_id
        text = render.to_customer(message, ticket, customer.language)
        parts = [self._text_part(chat_id, chunk, ticket.id, message.id)
                 for chunk in render.split_text(text)]
        parts += [self._file_part(chat_id, file, None, ticket.id, message.id, customer.language)
                  for file in files]
        try:
            return await self._send_parts(row, payload.parts_done, parts)
        except TelegramForbiddenError as exc:
            await self._customer_blocked(customer, ticket)
            raise Dead(f"customer blocked the bot: {exc}") from exc

    async def edit_customer_copy(self, row: OutboxItem, payload: MessageRef) -> Outcome:
        """An agent edited their reply: edit the customer's copy of it, or send
        the new text when there is no single text copy to edit."""
        plan = await edits.plan_customer_copy_edit(self._sm, payload.message_id)
        if plan is None:
            return Outcome()
        try:
            if plan.tg_message_id is not None:
                try:
                    await self._bot.edit_message_text(text=plan.html, chat_id=plan.chat_id,
                                                      message_id=plan.tg_message_id,
                                                      parse_mode="HTML")
                    return Outcome()
                except TelegramBadRequest as exc:
                    if "message is not modified" in str(exc):
                        return Outcome()
                    if "message to edit not found" not in str(exc):
                        raise
            outcome = Outcome()
            outcome.link(await self._send_html(plan.chat_id, plan.fallback_html),
                         plan.ticket_id, None)
            return outcome
        except TelegramForbiddenError as exc:
            ticket, customer = await self._load(plan.ticket_id)
            await self._customer_blocked(customer, ticket)
            raise Dead(f"customer blocked the bot: {exc}") from exc

    async def customer_notice(self, row: OutboxItem, payload: Notice) -> Outcome:
        ticket, customer = await self._load(payload.ticket_id)
        if payload.key == "customer.ticket_created" and ticket.number is None:
            raise NotReady()  # tell the customer the helpdesk's number
        lang = customer.language
        text = gettext(lang, payload.key, number=render.escape(render.number(ticket)),
                       subject=render.escape(ticket.subject))
        markup = None
        if payload.key == "customer.status_closed" and ticket.rating is None:
            markup = keyboards.rating(ticket.id, lang, self._capabilities)
        try:
            sent = await self._send_html(customer.tg_user_id, text, markup=markup)
        except TelegramForbiddenError as exc:
            await self._customer_blocked(customer, ticket)
            raise Dead(f"customer blocked the bot: {exc}") from exc
        outcome = Outcome()
        outcome.link(sent, ticket.id, None)
        return outcome

    async def _customer_blocked(self, customer: Customer, ticket: Ticket) -> None:
        """403 from the customer's chat: mark them and tell the agents."""
        async with self._sm.begin() as session:
            fresh = await session.get(Customer, customer.id)
            if fresh is None or fresh.blocked_at is not None:
                return
            fresh.blocked_at = utcnow()
            enqueue(session, Kind.AGENT_NOTICE, agent_lane(ticket.id),
                    {"ticket_id": ticket.id, "key": "agent.customer_blocked"})
            refresh_card(session, ticket.id)

    # ------------------------------------------------------------ parts

    def _file_part(self, chat_id: int, file: Attachment, caption: str | None,
                   ticket_id: int, message_id: int, lang: str, **kwargs: Any) -> Part:
        async def send() -> TgMessage | None:
            media: Any = file.tg_file_id
            if media is None and file.remote_url and self._fetch_url is not None:
                media = BufferedInputFile(await self._fetch_url(file.remote_url),
                                          filename=file.file_name)
            if media is None:
                # Nothing Telegram can fetch (the helpdesk gave no usable link):
                # name the file rather than drop it silently.
                return await self._send_html(
                    chat_id, f"📎 {render.escape(file.file_name)} — "
                    + gettext(lang, "delivery.file_unavailable"), **kwargs)
            senders: dict[str, Callable[..., Awaitable[TgMessage]]] = {
                "photo": self._bot.send_photo, "voice": self._bot.send_voice,
                "video": self._bot.send_video, "audio": self._bot.send_audio,
                "animation": self._bot.send_animation,
            }
            method = senders.get(file.kind, self._bot.send_document)
            return await method(chat_id, media, caption=caption,
                                parse_mode="HTML" if caption else None, **kwargs)

        return Part(send, ticket_id, message_id)

    def _text_part(self, chat_id: int, text: str, ticket_id: int, message_id: int | None,
                   *, ticket: Ticket | None = None, also_done: list[int] | None = None,
                   markup: InlineKeyboardMarkup | None = None) -> Part:
        async def send() -> TgMessage:
            if ticket is not None:
                return await self._send_agent(ticket, text, markup=markup)
            return await self._send_html(chat_id, text, markup=markup)

        return Part(send, ticket_id, message_id, also_done or [])

    async def _send_parts(self, row: OutboxItem, done: int, parts: Sequence[Part]) -> Outcome:
        """Send a row's messages one by one, recording each as it goes out, so
        that a retry after a failure part-way never repeats what was sent."""
        outcome = Outcome()
        for index, part in enumerate(parts):
            if index < done:
                continue
            sent = await part.send()
            if index == len(parts) - 1:
                # The last part is recorded with the row's completion: one
                # transaction fewer for the common single-message row.
                outcome.link(sent, part.ticket_id, part.message_id)
                outcome.also_done.extend(part.also_done)
            else:
                progress = Outcome(also_done=part.also_done)
                progress.link(sent, part.ticket_id, part.message_id)
                await self._store.with_patience(self._store.record_part, row, index + 1,
                                                progress)
        return outcome

    # ------------------------------------------------------------ threads

    async def _ensure_thread(self, ticket: Ticket, customer: Customer) -> Ticket:
        """The ticket's place in the agent chat: its forum topic, or (without
        topics) its card, which later messages reply to."""
        if ticket.remote_ticket_id is None and ticket.number is None:
            raise NotReady()  # the topic is named with the provider's number
        chat = self.agent_chat
        if chat.uses_topics and ticket.tg_topic_id is None:
            topic_id = await self._create_topic(ticket, customer)
            if topic_id is not None:
                ticket.tg_topic_id = topic_id
                ticket.tg_card_message_id = None
                # Named with the status it has now (render.topic_name), open.
                ticket.tg_topic_status = ticket.status
                ticket.tg_topic_closed = False
                await self._save_ticket_thread(ticket)
        if ticket.tg_card_message_id is None:
            opening = await self._opening_message(ticket.id)
            sent = await self._send_agent(ticket, render.card(ticket, customer, opening,
                                                              chat.language),
                                          markup=self._card_markup(ticket), thread_only=True)
            ticket.tg_card_message_id = sent.message_id
            ticket.tg_card_pinned = False
            await self._save_ticket_thread(ticket, link=sent)
        return ticket

    async def _create_topic(self, ticket: Ticket, customer: Customer) -> int | None:
        """A new topic's id, or None when the bot may not create topics: then
        the ticket is threaded by replies in the general topic, and the
        agents are told once how to fix it."""
        chat = self.agent_chat
        try:
            topic = await self._bot.create_forum_topic(chat.chat_id,
                                                       render.topic_name(ticket, customer))
        except TelegramBadRequest as exc:
            if "not enough rights" not in str(exc).lower():
                raise
            await self._watch.no_topic_rights()
            return None
        return topic.message_thread_id

    async def _save_ticket_thread(self, ticket: Ticket, link: TgMessage | None = None) -> None:
        async with self._sm.begin() as session:
            await session.execute(update(Ticket).where(Ticket.id == ticket.id).values(
                tg_topic_id=ticket.tg_topic_id, tg_card_message_id=ticket.tg_card_message_id,
                tg_topic_status=ticket.tg_topic_status, tg_topic_closed=ticket.tg_topic_closed,
                tg_card_pinned=ticket.tg_card_pinned))
            if link is not None:
                session.add(TgLink(tg_chat_id=link.chat.id, tg_message_id=link.message_id,
                                   ticket_id=ticket.id, direction="out"))
            if self._topic_out_of_date(ticket):
                sync_topic(session, ticket.id)  # pin the new card, name the topic

    async def _opening_message(self, ticket_id: int) -> Message | None:
        async with self._sm() as session:
            return await session.scalar(select(Message).where(Message.ticket_id == ticket_id)
                                        .order_by(Message.id).limit(1))

    def _card_markup(self, ticket: Ticket) -> InlineKeyboardMarkup | None:
        return keyboards.agent_card(self.agent_chat.language, ticket.id, ticket.status,
                                    self._capabilities)

    def _in_topic(self, ticket: Ticket) -> bool:
        """Posting in an existing topic needs no right; only creating one does."""
        return self.agent_chat.forum and ticket.tg_topic_id is not None

    def _thread_kwargs(self, ticket: Ticket) -> dict[str, Any]:
        if self._in_topic(ticket):
            return {"message_thread_id": ticket.tg_topic_id}
        if ticket.tg_card_message_id:
            return {"reply_parameters": ReplyParameters(
                message_id=ticket.tg_card_message_id, allow_sending_without_reply=True)}
        return {}

    async def _send_agent(self, ticket: Ticket, text: str, *,
                          markup: InlineKeyboardMarkup | None = None,
                          thread_only: bool = False) -> TgMessage:
        """Send into the ticket's topic, or as a reply to its card; a deleted
        topic is recreated and a closed one reopened."""
        chat = self.agent_chat
        if thread_only:  # the card itself: at the top of the topic, or of the general topic
            kwargs: dict[str, Any] = ({"message_thread_id": ticket.tg_topic_id}
                                      if self._in_topic(ticket) else {})
        else:
            kwargs = self._thread_kwargs(ticket)
        try:
            return await self._send_html(chat.chat_id, text, markup=markup, **kwargs)
        except TelegramBadRequest as exc:
            await self._repair_topic(ticket, exc)
            raise

    async def _repair_topic(self, ticket: Ticket, exc: TelegramBadRequest) -> None:
        description = str(exc).lower()
        if "thread not found" in description or "topic_deleted" in description:
            log.warning("topic of ticket %s is gone; it will be recreated", ticket.id)
            ticket.tg_topic_id = None
            ticket.tg_card_message_id = None
            await self._save_ticket_thread(ticket)
            raise Deferred(0.1) from exc
        if "topic_closed" in description and ticket.tg_topic_id is not None:
            with contextlib.suppress(TelegramBadRequest):  # TOPIC_NOT_MODIFIED: open already
                await self._bot.reopen_forum_topic(self.agent_chat.chat_id, ticket.tg_topic_id)
            # Open now; the topic row closes it again after what is still to post,
            # if the ticket stays closed.
            ticket.tg_topic_closed = False
            await self._save_ticket_thread(ticket)
            raise Deferred(0.1) from exc

    async def _send_html(self, chat_id: int, text: str, *,
                         markup: InlineKeyboardMarkup | None = None, **kwargs: Any
                         ) -> TgMessage:
        try:
            return await self._bot.send_message(chat_id, text, parse_mode="HTML",
                                                reply_markup=markup, **kwargs)
        except TelegramBadRequest as exc:
            if "can't parse entities" not in str(exc):
                raise
            # Never lose a message over markup: send it as plain text.
            log.warning("HTML rejected by Telegram, sending as plain text: %s", exc)
            return await self._bot.send_message(chat_id, render._strip_tags(text),
                                                parse_mode=None, reply_markup=markup, **kwargs)

    # ------------------------------------------------------------ loading

    async def _load(self, ticket_id: int) -> tuple[Ticket, Customer]:
        async with self._sm() as session:
            return await load_ticket(session, ticket_id)

    async def _message_context(self, message_id: int
                               ) -> tuple[Message, list[Attachment], Ticket, Customer]:
        """A ticket message with everything a send needs, in one read."""
        async with self._sm() as session:
            message, files = await load_message(session, message_id)
            if message.ticket_id is None:
                raise NotReady()  # a draft the customer has not placed yet
            ticket = await session.get(Ticket, message.ticket_id)
            customer = await session.get(Customer, ticket.customer_id) if ticket else None
            if ticket is None or customer is None:
                raise Dead(f"the ticket of message {message_id} is gone")
            return message, files, ticket, customer


async def load_ticket(session: AsyncSession, ticket_id: int) -> tuple[Ticket, Customer]:
    ticket = await session.get(Ticket, ticket_id)
    if ticket is None:
        raise Dead(f"ticket {ticket_id} is gone")
    customer = await session.get(Customer, ticket.customer_id)
    assert customer is not None
    return ticket, customer


async def load_message(session: AsyncSession, message_id: int
                       ) -> tuple[Message, list[Attachment]]:
    message = await session.get(Message, message_id)
    if message is None:
        raise Dead(f"message {message_id} is gone")
    files = list(await session.scalars(
        select(Attachment).where(Attachment.message_id == message_id).order_by(Attachment.id)))
    return message, files
