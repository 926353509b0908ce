"""Outbox delivery: every side effect toward Telegram or the provider.

The dispatcher takes the head row of each lane that is due, delivers it
(pacing Telegram sends), and records the outcome together with the links it
produced in one transaction. A failure is retried with exponential backoff;
a 429 waits `retry_after`; what keeps failing becomes a dead letter
(`deskbridge outbox list|replay`).

Database work is kept out of the HTTP calls: rows and tickets are read in a
short session, the call is made with no transaction open (SQLite's `BEGIN
IMMEDIATE` would otherwise hold the write lock across the network), and the
result is written in another short transaction.

Exactly-once toward Telegram holds except in one window: if the process dies
after Telegram accepted a message and before the outcome commits, the row is
sent again on restart (Telegram has no idempotency key). Provider calls carry
the row's idempotency key, which providers that support it honour.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramRetryAfter,
)
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardMarkup,
    ReplyParameters,
)
from aiogram.types import Message as TgMessage
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from bot import keyboards
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
from bot.i18n import gettext
from bot.middlewares import is_database_outage
from bot.services import edits, render
from bot.services.identity import agent_identity, customer_identity
from bot.services.outbox import Kind, OutboxSignal, agent_lane, enqueue
from bot.services.pacing import TelegramPacer
from bot.web import Metrics
from bridges import base
from bridges.errors import BridgeError, Invalid, NotFound, RateLimited

log = logging.getLogger("deskbridge.delivery")

MAX_BACKOFF_SECONDS = 300.0
HEADS_PER_PASS = 100
LIVE_STATUSES = ("pending", "in_flight")
RECORD_ATTEMPTS = 12  # about a minute and a half of backoff
BOT_API_DOWNLOAD_LIMIT = 20 * 1024 * 1024  # getFile refuses larger files
TOO_BIG_NOTE = "over Telegram's 20 MB download limit, only in the Telegram chat"
# A send that must wait longer than this is put back instead of blocking its lane.
INLINE_WAIT_SECONDS = 1.5


class Deferred(Exception):
    """Not now: try again after `delay` seconds, without counting an attempt."""

    def __init__(self, delay: float) -> None:
        super().__init__(delay)
        self.delay = delay


class NotReady(Deferred):
    """Waiting for an earlier step (e.g. the ticket must exist at the provider)."""

    def __init__(self) -> None:
        super().__init__(1.0)


class Dead(Exception):
    """Retrying cannot help: the row becomes a dead letter now."""


@dataclass(slots=True)
class Outcome:
    """What a delivered row leaves behind, written with its `done` status."""

    links: list[tuple[int, int, int | None, int | None]] = field(default_factory=list)
    apply: list[Callable[[AsyncSession], Any]] = field(default_factory=list)
    also_done: list[int] = field(default_factory=list)  # merged rows

    def link(self, sent: TgMessage | Sequence[TgMessage], ticket_id: int | None,
             message_id: int | None) -> None:
        for item in sent if isinstance(sent, Sequence) else [sent]:
            self.links.append((item.chat.id, item.message_id, ticket_id, message_id))


@dataclass(slots=True)
class Part:
    """One Telegram message of a row; `send` returns None when it had nothing to send."""

    send: Callable[[], Awaitable[TgMessage | None]]
    ticket_id: int | None
    message_id: int | None
    also_done: list[int] = field(default_factory=list)  # merged rows this part carried


@dataclass(frozen=True, slots=True)
class AgentChat:
    chat_id: int
    forum: bool
    language: str


class OutboxDispatcher:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        bot: Bot,
        bridge: base.HelpdeskBridge,
        signal: OutboxSignal,
        pacer: TelegramPacer,
        agent_chat: AgentChat,
        *,
        max_attempts: int = 10,
        concurrency: int = 16,
        lease_seconds: float = 60.0,
        provider_timeout: float = 30.0,
        file_fetcher: Callable[[str], Awaitable[bytes]] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._sm = sessionmaker
        self._bot = bot
        self._bridge = bridge
        self._signal = signal
        self._pacer = pacer
        self.agent_chat = agent_chat
        self._max_attempts = max_attempts
        self._limit = asyncio.Semaphore(concurrency)
        self._fetch_url = file_fetcher
        self._concurrency = concurrency
        self._lease_seconds = lease_seconds
        self._provider_timeout = provider_timeout
        self._postgres = sessionmaker.kw["bind"].dialect.name == "postgresql"
        self._metrics = metrics or Metrics()

    # ------------------------------------------------------------------ loop

    async def run(self, stop: asyncio.Event) -> None:
        """Claim due rows as delivery slots free up; each runs as its own task."""
        running: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            free = self._concurrency - len(running)
            try:
                claimed = await self._claim(free) if free > 0 else []
                for row in claimed:
                    task = asyncio.create_task(self._deliver(row), name=f"outbox-{row.id}")
                    running.add(task)
                    task.add_done_callback(running.discard)
                timeout = 1.0 if claimed else await self._seconds_to_next_due()
            except Exception as exc:  # e.g. the database is away: try again shortly
                log.warning("outbox pass failed: %s: %s", type(exc).__name__, exc)
                timeout = 1.0
            await self._signal.wait(timeout)
        if running:  # let deliveries under way finish: their outcome must be recorded
            _, stuck = await asyncio.wait(running, timeout=20)
            for task in stuck:  # their rows are taken again when the lease ends
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)

    async def deliver_due(self) -> int:
        """One pass: claim and deliver the due head of every lane; returns
        how many rows were attempted (tests and `drain`)."""
        claimed = await self._claim(HEADS_PER_PASS)
        if claimed:
            await asyncio.gather(*(self._deliver(row) for row in claimed))
        return len(claimed)

    async def release_all_claims(self) -> None:
        """On SQLite only one process runs: claims left by a killed process
        of ours are released at start instead of waiting for their lease."""
        async with self._sm.begin() as session:
            await session.execute(update(OutboxItem).where(OutboxItem.status == "in_flight")
                                  .values(status="pending", next_attempt_at=utcnow()))

    async def drain(self, timeout: float = 30.0) -> None:
        """Deliver until nothing is due (tests and `outbox replay`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if not await self.deliver_due():
                wait = await self._seconds_to_next_due()
                if wait >= 5.0:
                    return
                await asyncio.sleep(min(wait, 0.2))

    async def _claim(self, limit: int) -> list[OutboxItem]:
        """Take the due head row of up to `limit` lanes for this process.

        A claimed row is `in_flight` with a lease (its `next_attempt_at`); a
        process that dies leaves it to be claimed again when the lease ends.
        On PostgreSQL `FOR UPDATE SKIP LOCKED` lets several processes claim
        side by side without waiting on each other or taking the same row;
        an earlier row of a lane, pending or in flight, keeps the lane's
        later rows waiting, so order within a lane holds across processes."""
        now = utcnow()
        earlier = aliased(OutboxItem)
        blocked = (
            select(earlier.id)
            .where(earlier.lane == OutboxItem.lane, earlier.status.in_(LIVE_STATUSES),
                   earlier.id < OutboxItem.id)
            .exists()
        )
        due = (
            select(OutboxItem)
            .where(OutboxItem.status.in_(LIVE_STATUSES), OutboxItem.next_attempt_at <= now,
                   ~blocked)
            .order_by(OutboxItem.id)
        )
        # The agent group's 20 a minute are the scarcest budget: take no more
        # agent-chat rows than it can send now, so waiting mirrors do not churn
        # through claims (and starve customers' deliveries) while they wait.
        agent_rows = self._agent_chat_quota()
        statements = [due.where(~OutboxItem.lane.startswith("a:")).limit(limit)]
        if agent_rows:
            statements.append(due.where(OutboxItem.lane.startswith("a:")).limit(agent_rows))
        if self._postgres:
            statements = [s.with_for_update(skip_locked=True, of=OutboxItem) for s in statements]
        async with self._sm.begin() as session:
            rows = [row for statement in statements for row in await session.scalars(statement)]
            lease_end = now + timedelta(seconds=self._lease_seconds)
            for row in rows:
                row.status = "in_flight"
                row.next_attempt_at = lease_end
        return rows

    def _agent_chat_quota(self) -> int:
        """How many agent-chat rows to claim now (0 while the group must wait)."""
        chat_id = self.agent_chat.chat_id
        if self._pacer.delay_for(chat_id) > INLINE_WAIT_SECONDS:
            return 0
        return max(1, self._pacer.group_budget(chat_id))

    async def _seconds_to_next_due(self) -> float:
        waits = [5.0]
        async with self._sm() as session:
            for lanes in ("others", "agent"):
                if lanes == "agent" and not self._agent_chat_quota():
                    waits.append(self._pacer.delay_for(self.agent_chat.chat_id))
                    continue
                in_lanes = OutboxItem.lane.startswith("a:")
                next_at = await session.scalar(
                    select(func.min(OutboxItem.next_attempt_at)).where(
                        OutboxItem.status.in_(LIVE_STATUSES),
                        in_lanes if lanes == "agent" else ~in_lanes))
                if next_at is not None:
                    waits.append((next_at - utcnow()).total_seconds())
        return min(5.0, max(0.05, min(waits)))

    # --------------------------------------------------------------- one row

    async def _deliver(self, row: OutboxItem) -> None:
        try:
            await self._deliver_once(row)
        except Exception:
            # Recording the outcome failed (the database went away): the row
            # stays claimed and is taken again when its lease ends.
            log.exception("outbox row %s: could not record the outcome", row.id)
        self._signal.notify()

    async def _deliver_once(self, row: OutboxItem) -> None:
        async with self._limit:
            try:
                if row.kind.startswith("provider."):
                    # A helpdesk that hangs must not hold the lane (or its lease) forever.
                    async with asyncio.timeout(self._provider_timeout):
                        outcome = await self._handle(row)
                else:
                    outcome = await self._handle(row)
            except Exception as exc:
                # What happens next is written down with the same patience as
                # a success: a database hiccup must not strand the row.
                await self._record_with_patience(self._after_failure, row, exc)
            else:
                await self._record_with_patience(self._complete, row, outcome)

    async def _after_failure(self, row: OutboxItem, exc: Exception) -> None:
        if isinstance(exc, Deferred):
            await self._reschedule(row, exc.delay, count=False)
        elif isinstance(exc, TelegramRetryAfter):
            self._metrics.telegram_429.inc()
            self._pacer.pause(self._chat_of_retry(row), exc.retry_after)
            await self._reschedule(row, exc.retry_after, count=False,
                                   error=f"429 retry after {exc.retry_after}")
        elif isinstance(exc, RateLimited):
            await self._reschedule(row, exc.retry_after or 60.0, count=False,
                                   error=f"provider rate limited: {exc}")
        elif isinstance(exc, Dead | NotFound | Invalid):
            await self._bury(row, f"{type(exc).__name__}: {exc}")
        elif isinstance(exc, BridgeError | TelegramBadRequest | TimeoutError):
            await self._retry_or_bury(row, f"{type(exc).__name__}: {exc}")
        else:
            if not is_database_outage(exc):
                log.error("delivering outbox row %s (%s) failed", row.id, row.kind,
                          exc_info=exc)
            await self._retry_or_bury(row, f"{type(exc).__name__}: {exc}")

    def _chat_of_retry(self, row: OutboxItem) -> int | None:
        return self.agent_chat.chat_id if row.lane.startswith("a:") else None

    async def _record_with_patience(self, record: Callable[..., Awaitable[None]],
                                    *args: Any) -> None:
        """The send happened: insist on recording it (a database hiccup must
        not turn into a second send when the lease ends)."""
        delay = 0.25
        for _ in range(RECORD_ATTEMPTS - 1):
            try:
                await record(*args)
                return
            except Exception as exc:
                if not is_database_outage(exc):
                    raise
                log.warning("recording a delivery failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        await record(*args)

    async def _complete(self, row: OutboxItem, outcome: Outcome) -> None:
        async with self._sm.begin() as session:
            for apply in outcome.apply:
                result = apply(session)
                if asyncio.iscoroutine(result):
                    await result
            if outcome.links:  # one statement; a link recorded before is kept
                insert = postgresql_insert if self._postgres else sqlite_insert
                await session.execute(insert(TgLink).values([
                    {"tg_chat_id": chat_id, "tg_message_id": message_id, "ticket_id": ticket_id,
                     "message_id": message_ref, "direction": "out"}
                    for chat_id, message_id, ticket_id, message_ref in outcome.links
                ]).on_conflict_do_nothing(index_elements=["tg_chat_id", "tg_message_id"]))
            await session.execute(
                update(OutboxItem)
                .where(OutboxItem.id.in_([row.id, *outcome.also_done]))
                .values(status="done", delivered_at=utcnow(), last_error=None)
            )
        self._metrics.deliveries.inc(1 + len(outcome.also_done))

    async def _reschedule(self, row: OutboxItem, delay: float, *, count: bool,
                          error: str | None = None) -> None:
        async with self._sm.begin() as session:
            values: dict[str, Any] = {"status": "pending",
                                      "next_attempt_at": utcnow() + timedelta(seconds=delay)}
            if count:
                values["attempts"] = OutboxItem.attempts + 1
            if error:
                values["last_error"] = error[:2000]
            await session.execute(update(OutboxItem).where(OutboxItem.id == row.id)
                                  .values(**values))

    async def _retry_or_bury(self, row: OutboxItem, error: str) -> None:
        if row.attempts + 1 >= self._max_attempts:
            await self._bury(row, error)
            return
        backoff = min(MAX_BACKOFF_SECONDS, 2.0 ** row.attempts) * random.uniform(0.8, 1.2)
        log.warning("outbox row %s (%s) failed, retry in %.1fs: %s", row.id, row.kind,
                    backoff, error)
        await self._reschedule(row, backoff, count=True, error=error)

    async def _bury(self, row: OutboxItem, error: str) -> None:
        log.error("outbox row %s (%s) is a dead letter: %s", row.id, row.kind, error)
        self._metrics.failures.inc()
        async with self._sm.begin() as session:
            await session.execute(
                update(OutboxItem).where(OutboxItem.id == row.id)
                .values(status="dead", attempts=OutboxItem.attempts + 1,
                        last_error=error[:2000])
            )
            ticket_id = row.payload.get("ticket_id") or await self._ticket_of_row(session, row)
            # Tell the agents, unless the failure is itself in the agent chat.
            if ticket_id and not row.lane.startswith("a:"):
                enqueue(session, Kind.AGENT_NOTICE, agent_lane(ticket_id),
                        {"ticket_id": ticket_id, "key": "agent.delivery_failed",
                         "params": {"what": row.kind, "error": error[:300]}})

    async def _ticket_of_row(self, session: AsyncSession, row: OutboxItem) -> int | None:
        message_id = row.payload.get("message_id")
        if message_id is None:
            return None
        return await session.scalar(select(Message.ticket_id).where(Message.id == message_id))

    async def _handle(self, row: OutboxItem) -> Outcome:
        handler = {
            Kind.CREATE_TICKET: self._create_ticket,
            Kind.POST_MESSAGE: self._post_message,
            Kind.UPDATE_TICKET: self._update_ticket,
            Kind.REFER: self._refer,
            Kind.MIRROR: self._mirror,
            Kind.CARD: self._card,
            Kind.AGENT_NOTICE: self._agent_notice,
            Kind.CUSTOMER_MESSAGE: self._customer_message,
            Kind.CUSTOMER_NOTICE: self._customer_notice,
            Kind.EDIT_MIRROR: self._edit_mirror,
            Kind.AGENT_CHAT_NOTICE: self._agent_chat_notice,
        }.get(Kind(row.kind))
        if handler is None:
            raise Dead(f"unknown outbox kind {row.kind}")
        return await handler(row)

    # ------------------------------------------------------------- loading

    async def _load(self, ticket_id: int) -> tuple[Ticket, Customer]:
        async with self._sm() as session:
            ticket = await session.get(Ticket, ticket_id)
            if ticket is None:
                raise Dead(f"ticket {ticket_id} is gone")
            customer = await session.get(Customer, ticket.customer_id)
            assert customer is not None
            return ticket, customer

    async def _message(self, message_id: int) -> tuple[Message, list[Attachment]]:
        async with self._sm() as session:
            return await self._message_in(session, message_id)

    async def _message_in(self, session: AsyncSession, message_id: int
                          ) -> tuple[Message, list[Attachment]]:
        message = await session.get(Message, message_id)
        if message is None:
            raise Dead(f"message {message_id} is gone")
        files = list(await session.scalars(
            select(Attachment).where(Attachment.message_id == message_id)
            .order_by(Attachment.id)))
        return message, files

    async def _message_context(self, message_id: int
                               ) -> tuple[Message, list[Attachment], Ticket, Customer]:
        """A ticket message with everything a send needs, in one read."""
        async with self._sm() as session:
            message, files = await self._message_in(session, message_id)
            if message.ticket_id is None:
                raise NotReady()  # a draft the customer has not placed yet
            ticket = await session.get(Ticket, message.ticket_id)
            customer = await session.get(Customer, ticket.customer_id) if ticket else None
            if ticket is None or customer is None:
                raise Dead(f"the ticket of message {message_id} is gone")
            return message, files, ticket, customer

    # ------------------------------------------------------------ provider

    async def _create_ticket(self, row: OutboxItem) -> Outcome:
        ticket, customer = await self._load(row.payload["ticket_id"])
        if ticket.remote_ticket_id is not None:
            return Outcome()
        message, files = await self._message(row.payload["message_id"])
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

    async def _remote_ticket_id(self, ticket_id: int) -> str:
        ticket, _ = await self._load(ticket_id)
        if ticket.remote_ticket_id is None:
            raise NotReady()
        return ticket.remote_ticket_id

    async def _post_message(self, row: OutboxItem) -> Outcome:
        try:
            message, files, ticket, customer = await self._message_context(
                row.payload["message_id"])
        except NotReady:
            return Outcome()  # a draft: placing it enqueues its own post
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

    async def _update_ticket(self, row: OutboxItem) -> Outcome:
        payload = row.payload
        remote_id = await self._remote_ticket_id(payload["ticket_id"])
        assignee = None
        if payload.get("assignee_agent_id"):
            assignee = await self._agent_identity(payload["assignee_agent_id"], None)
        actor = (await self._agent_identity(payload["actor_agent_id"], None)
                 if payload.get("actor_agent_id") else None)
        await self._bridge.update_ticket(
            remote_id,
            base.TicketUpdate(
                status=base.TicketStatus(payload["status"]) if payload.get("status") else None,
                priority=base.Priority(payload["priority"]) if payload.get("priority") else None,
                assignee=assignee,
                unassign=bool(payload.get("unassign")),
            ),
            actor=actor,
            idempotency_key=row.idempotency_key,
        )
        return Outcome()

    async def _refer(self, row: OutboxItem) -> Outcome:
        payload = row.payload
        remote_id = await self._remote_ticket_id(payload["ticket_id"])
        actor = await self._agent_identity(payload.get("actor_agent_id"), None)
        remote = await self._bridge.refer(remote_id, payload["target"], actor)

        def apply(session: AsyncSession) -> Any:
            return session.execute(update(Ticket).where(Ticket.id == payload["ticket_id"]).values(
                assignee_name=remote.assignee_name, assignee_agent_id=None,
                status=remote.status.value, updated_at=utcnow()))

        async def refresh_card(session: AsyncSession) -> None:
            enqueue(session, Kind.CARD, agent_lane(payload["ticket_id"]),
                    {"ticket_id": payload["ticket_id"]})

        return Outcome(apply=[apply, refresh_card])

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

    # ------------------------------------------------------------ telegram

    async def _slot(self, chat_id: int) -> None:
        """Wait for a pacing slot, or give the row back if the wait is long."""
        delay = self._pacer.delay_for(chat_id)
        if delay > INLINE_WAIT_SECONDS:
            raise Deferred(delay)
        self._pacer.record(chat_id, delay)  # booked: later senders queue behind this one
        if delay > 0:
            await asyncio.sleep(delay)

    async def _ensure_thread(self, ticket: Ticket, customer: Customer) -> Ticket:
        """The ticket's place in the agent chat: its forum topic, or (without
        topics) its card, which later messages reply to."""
        if ticket.remote_ticket_id is None and ticket.number is None:
            raise NotReady()  # the topic is named with the provider's number
        chat = self.agent_chat
        if chat.forum and ticket.tg_topic_id is None:
            await self._slot(chat.chat_id)
            topic = await self._bot.create_forum_topic(
                chat.chat_id, render.topic_name(ticket, customer))
            ticket.tg_topic_id = topic.message_thread_id
            ticket.tg_card_message_id = None
            await self._save_ticket_thread(ticket)
        if ticket.tg_card_message_id is None:
            opening = await self._opening_message(ticket.id)
            await self._slot(chat.chat_id)
            sent = await self._send_agent(ticket, render.card(ticket, customer, opening,
                                                              chat.language),
                                          markup=self._card_markup(ticket), thread_only=True)
            ticket.tg_card_message_id = sent.message_id
            await self._save_ticket_thread(ticket, link=sent)
        return ticket

    async def _save_ticket_thread(self, ticket: Ticket, link: TgMessage | None = None) -> None:
        async with self._sm.begin() as session:
            await session.execute(update(Ticket).where(Ticket.id == ticket.id).values(
                tg_topic_id=ticket.tg_topic_id, tg_card_message_id=ticket.tg_card_message_id))
            if link is not None:
                session.add(TgLink(tg_chat_id=link.chat.id, tg_message_id=link.message_id,
                                   ticket_id=ticket.id, direction="out"))

    async def _opening_message(self, ticket_id: int) -> Message | None:
        async with self._sm() as session:
            return await session.scalar(select(Message).where(Message.ticket_id == ticket_id)
                                        .order_by(Message.id).limit(1))

    def _card_markup(self, ticket: Ticket) -> InlineKeyboardMarkup | None:
        return keyboards.agent_card(self.agent_chat.language, ticket.id, ticket.status,
                                    self._bridge.capabilities)

    async def _send_agent(self, ticket: Ticket, text: str, *,
                          markup: InlineKeyboardMarkup | None = None,
                          thread_only: bool = False) -> TgMessage:
        """Send into the ticket's topic, or as a reply to its card; a deleted
        topic is recreated and a closed one reopened."""
        chat = self.agent_chat
        kwargs = {} if thread_only and not chat.forum else self._thread_kwargs(ticket)
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
            await self._bot.reopen_forum_topic(self.agent_chat.chat_id, ticket.tg_topic_id)
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
                await self._slot(chat_id)
                return await self._send_html(
                    chat_id, f"📎 {render.escape(file.file_name)} — "
                    + gettext(lang, "delivery.file_unavailable"), **kwargs)
            await self._slot(chat_id)
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
            await self._slot(chat_id)
            if ticket is not None:
                return await self._send_agent(ticket, text, markup=markup)
            return await self._send_html(chat_id, text, markup=markup)

        return Part(send, ticket_id, message_id, also_done or [])

    async def _send_parts(self, row: OutboxItem, parts: Sequence[Part]) -> Outcome:
        """Send a row's messages one by one, recording each as it goes out, so
        that a retry after a failure part-way never repeats what was sent."""
        done = int(row.payload.get("parts_done", 0))
        outcome = Outcome()
        for index, part in enumerate(parts):
            if index < done:
                continue
            sent = await part.send()
            if index == len(parts) - 1:
                # The last part is recorded with the row's completion: one
                # transaction fewer for the common single-message row.
                if sent is not None:
                    outcome.link(sent, part.ticket_id, part.message_id)
                outcome.also_done.extend(part.also_done)
            else:
                await self._record_with_patience(self._record_part, row, index + 1, sent, part)
        return outcome

    async def _record_part(self, row: OutboxItem, parts_done: int, sent: TgMessage | None,
                           part: Part) -> None:
        row.payload = {**row.payload, "parts_done": parts_done}
        async with self._sm.begin() as session:
            await session.execute(update(OutboxItem).where(OutboxItem.id == row.id)
                                  .values(payload=row.payload))
            if sent is not None:
                session.add(TgLink(tg_chat_id=sent.chat.id, tg_message_id=sent.message_id,
                                   ticket_id=part.ticket_id, message_id=part.message_id,
                                   direction="out"))
            if part.also_done:
                await session.execute(
                    update(OutboxItem).where(OutboxItem.id.in_(part.also_done))
                    .values(status="done", delivered_at=utcnow(), last_error=None))
        self._metrics.deliveries.inc(len(part.also_done))

    async def _mirror(self, row: OutboxItem) -> Outcome:
        message, files, ticket, customer = await self._message_context(row.payload["message_id"])
        ticket = await self._ensure_thread(ticket, customer)
        chat_id = self.agent_chat.chat_id
        lang = self.agent_chat.language
        tag = None if self.agent_chat.forum else f"#{render.number(ticket)}"
        files_only = bool(row.payload.get("files_only"))
        has_text = bool(message.text or message.html)
        parts: list[Part] = []
        if not files_only and (has_text or not files):
            texts = [render.mirror(message, lang, ticket_tag=tag)]
            merged: list[int] = []
            if not files and not row.payload.get("parts_done"):
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
        if not files_only and not has_text:
            caption = render.mirror(message, lang, ticket_tag=tag)
        for index, file in enumerate(files):
            parts.append(self._file_part(chat_id, file, caption if index == 0 else None,
                                         ticket.id, message.id, lang,
                                         **self._thread_kwargs(ticket)))
        return await self._send_parts(row, parts)

    def _thread_kwargs(self, ticket: Ticket) -> dict[str, Any]:
        if self.agent_chat.forum:
            return {"message_thread_id": ticket.tg_topic_id}
        if ticket.tg_card_message_id:
            return {"reply_parameters": ReplyParameters(
                message_id=ticket.tg_card_message_id, allow_sending_without_reply=True)}
        return {}

    async def _mergeable_followers(self, head: OutboxItem) -> list[tuple[OutboxItem, Message]]:
        """Consecutive pending text-only mirrors behind `head` in its lane,
        when more are pending than the group's budget allows: merging them
        keeps a busy agent group seconds behind, not minutes."""
        async with self._sm() as session:
            rows = list(await session.scalars(
                select(OutboxItem).where(OutboxItem.lane == head.lane,
                                         OutboxItem.status == "pending",
                                         OutboxItem.id > head.id,
                                         OutboxItem.next_attempt_at <= utcnow())
                .order_by(OutboxItem.id).limit(50)))
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
        if len(followers) + 1 <= self._pacer.group_budget(self.agent_chat.chat_id):
            return []
        return followers

    async def _card(self, row: OutboxItem) -> Outcome:
        ticket, customer = await self._load(row.payload["ticket_id"])
        had_card = ticket.tg_card_message_id is not None
        ticket = await self._ensure_thread(ticket, customer)
        outcome = Outcome(also_done=await self._collapsible_cards(row))
        if not had_card:
            return outcome  # just created, with the current state
        opening = await self._opening_message(ticket.id)
        await self._slot(self.agent_chat.chat_id)
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

    async def _collapsible_cards(self, head: OutboxItem) -> list[int]:
        """Card refreshes queued right behind this one: the card shows the
        current state, so one edit serves them all."""
        async with self._sm() as session:
            rows = await session.scalars(
                select(OutboxItem).where(OutboxItem.lane == head.lane,
                                         OutboxItem.status == "pending",
                                         OutboxItem.id > head.id)
                .order_by(OutboxItem.id).limit(20))
            collapsed = []
            for row in rows:
                if row.kind != Kind.CARD:
                    break
                collapsed.append(row.id)
            return collapsed

    async def _agent_notice(self, row: OutboxItem) -> Outcome:
        ticket, customer = await self._load(row.payload["ticket_id"])
        ticket = await self._ensure_thread(ticket, customer)
        lang = self.agent_chat.language
        params = {k: render.escape(str(v)) for k, v in row.payload.get("params", {}).items()}
        text = "ℹ️ " + gettext(lang, row.payload["key"], number=render.number(ticket), **params)
        if not self.agent_chat.forum:
            text = f"#{render.escape(render.number(ticket))} · {text}"
        await self._slot(self.agent_chat.chat_id)
        sent = await self._send_agent(ticket, text)
        outcome = Outcome()
        outcome.link(sent, ticket.id, None)
        return outcome

    async def _customer_message(self, row: OutboxItem) -> Outcome:
        message, files, ticket, customer = await self._message_context(row.payload["message_id"])
        chat_id = customer.tg_user_id
        text = render.to_customer(message, ticket, customer.language)
        parts = [self._text_part(chat_id, chunk, ticket.id, message.id)
                 for chunk in render.split_text(text)]
        parts += [self._file_part(chat_id, file, None, ticket.id, message.id, customer.language)
                  for file in files]
        try:
            return await self._send_parts(row, parts)
        except TelegramForbiddenError as exc:
            await self._customer_blocked(customer, ticket)
            raise Dead(f"customer blocked the bot: {exc}") from exc

    async def _customer_notice(self, row: OutboxItem) -> Outcome:
        ticket, customer = await self._load(row.payload["ticket_id"])
        key = row.payload["key"]
        if key == "customer.ticket_created" and ticket.number is None:
            raise NotReady()  # tell the customer the helpdesk's number
        lang = customer.language
        text = gettext(lang, key, number=render.escape(render.number(ticket)),
                       subject=render.escape(ticket.subject))
        markup = None
        if key == "customer.status_closed" and ticket.rating is None:
            markup = keyboards.rating(ticket.id, lang, self._bridge.capabilities)
        await self._slot(customer.tg_user_id)
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
            enqueue(session, Kind.CARD, agent_lane(ticket.id), {"ticket_id": ticket.id})

    async def _edit_mirror(self, row: OutboxItem) -> Outcome:
        """The customer edited a message: edit the bot's copy of it in the
        agent chat (bot.services.edits finds it), or post the new text when
        there is no single text copy to edit."""
        chat = self.agent_chat
        plan = await edits.plan_mirror_edit(self._sm, row.payload["message_id"],
                                            chat_id=chat.chat_id, forum=chat.forum,
                                            lang=chat.language)
        if plan is None:
            return Outcome()
        if plan.tg_message_id is not None:
            await self._slot(chat.chat_id)
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
        await self._slot(chat.chat_id)
        outcome = Outcome()
        outcome.link(await self._send_agent(ticket, plan.fallback_html), ticket.id, None)
        return outcome

    async def _agent_chat_notice(self, row: OutboxItem) -> Outcome:
        """A message to the agent chat itself (the general topic), e.g. the SLA summary."""
        await self._slot(self.agent_chat.chat_id)
        await self._send_html(self.agent_chat.chat_id, row.payload["html"])
        return Outcome()
