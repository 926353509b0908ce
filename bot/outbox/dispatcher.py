"""Outbox delivery: claim due rows, deliver each by its kind, record the outcome.

The dispatcher takes the head row of each lane that is due (agent-chat rows
only as many as the group's budget can send now, the most urgent first),
delivers it through the handler of its kind (bot.outbox.telegram,
bot.outbox.provider), and records the outcome together with the links it
produced in one transaction. What a failure leads to is one table
(bot.outbox.decisions).

Exactly-once toward Telegram holds except in one window: if the process dies
after Telegram accepted a message and before the outcome commits, the row is
sent again on restart (Telegram has no idempotency key). Provider calls carry
the row's idempotency key, which providers that support it honour.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from aiogram.exceptions import TelegramAPIError, TelegramNetworkError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import OutboxItem
from bot.middlewares import is_database_outage
from bot.outbox.dead_letters import what_of, why_of
from bot.outbox.decisions import Action, Dead, decide
from bot.outbox.hold import ProviderHold
from bot.outbox.outcome import KindHandler
from bot.outbox.payloads import Kind, parse_payload
from bot.outbox.queue import (
    OutboxSignal,
    agent_lane,
    enqueue,
    is_agent_chat_lane,
)
from bot.outbox.store import OutboxStore
from bot.telegram.agent_chat import AgentChat
from bot.telegram.pacer import SendPriority, TelegramPacer, sending
from bot.web import Metrics
from bridges.errors import BridgeError

log = logging.getLogger("deskbridge.delivery")

HEADS_PER_PASS = 100
# A Telegram send that must wait longer than this gives its row back
# (rescheduled, no attempt spent) instead of holding a delivery slot.
SEND_PATIENCE_SECONDS = 1.5


class OutboxDispatcher:
    def __init__(
        self,
        store: OutboxStore,
        handlers: Mapping[Kind, KindHandler],
        signal: OutboxSignal,
        pacer: TelegramPacer,
        agent_chat: AgentChat,
        *,
        max_attempts: int = 10,
        concurrency: int = 16,
        provider_timeout: float = 30.0,
        metrics: Metrics | None = None,
        hold: ProviderHold | None = None,
    ) -> None:
        self.store = store
        self.hold = hold
        self._handlers = handlers
        self._signal = signal
        self._pacer = pacer
        self.agent_chat = agent_chat
        self._max_attempts = max_attempts
        self._concurrency = concurrency
        self._limit = asyncio.Semaphore(concurrency)
        self._provider_timeout = provider_timeout
        self._metrics = metrics or Metrics()
        self._agent_rows_in_flight = 0

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
        await self.store.release_all_claims()

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
        provider_limit = None
        if self.hold is not None and self.hold.held:
            provider_limit = 1 if self.hold.take_probe() else 0
        rows = await self.store.claim(limit, await self._agent_chat_quota(), provider_limit)
        self._agent_rows_in_flight += sum(1 for row in rows if is_agent_chat_lane(row.lane))
        return rows

    async def _agent_chat_wait(self) -> float | None:
        """How long the agent chat's budget is closed to a new row (None: open)."""
        if not self.agent_chat.reachable:
            return 5.0
        wait = await self._pacer.budget.peek(self.agent_chat.chat_id)
        return wait if wait > SEND_PATIENCE_SECONDS else None

    async def _agent_chat_quota(self) -> int:
        """Agent-chat rows to claim now: one, the most urgent, when the group
        can send within a row's patience and no row of ours is already
        waiting for it. The group's 20 a minute are the scarcest budget:
        rows claimed together would race for the next slot whatever their
        priority, and claiming more would only churn rows while they wait."""
        if self._agent_rows_in_flight or await self._agent_chat_wait() is not None:
            return 0
        return 1

    async def _seconds_to_next_due(self) -> float:
        return await self.store.seconds_to_next_due(agent_chat_wait=await self._agent_chat_wait())

    # --------------------------------------------------------------- one row

    async def _deliver(self, row: OutboxItem) -> None:
        try:
            await self._deliver_once(row)
        except Exception:
            # Recording the outcome failed (the database went away): the row
            # stays claimed and is taken again when its lease ends.
            log.exception("outbox row %s: could not record the outcome", row.id)
        finally:
            if is_agent_chat_lane(row.lane):
                self._agent_rows_in_flight -= 1
        self._signal.notify()

    async def _deliver_once(self, row: OutboxItem) -> None:
        async with self._limit:
            try:
                kind = Kind(row.kind)
                handler = self._handlers.get(kind)
                if handler is None:
                    raise Dead(f"unknown outbox kind {row.kind}")
                payload = parse_payload(kind, row.payload)
                with sending(SendPriority(row.priority), SEND_PATIENCE_SECONDS):
                    if kind.toward_provider:
                        # A helpdesk that hangs must not hold the lane (or its lease) forever.
                        async with asyncio.timeout(self._provider_timeout):
                            outcome = await handler(row, payload)
                    else:
                        outcome = await handler(row, payload)
            except Exception as exc:
                # What happens next is written down with the same patience as
                # a success: a database hiccup must not strand the row.
                await self.store.with_patience(self._after_failure, row, exc)
            else:
                await self.store.with_patience(self.store.complete, row, outcome)
                self._metrics.deliveries.inc(1 + len(outcome.also_done))
                if kind.toward_provider and self.hold is not None and await self.hold.end():
                    await self.store.release_held()  # in their original order, now

    async def _after_failure(self, row: OutboxItem, exc: Exception) -> None:
        decision = decide(exc, row.attempts, self._max_attempts)
        error = f"{type(exc).__name__}: {exc}"
        if decision.action is Action.WAIT:
            await self.store.reschedule(row, decision.delay, count=False)
        elif decision.action is Action.HOLD:
            delay = decision.delay
            if self.hold is not None:
                await self.hold.start(exc)
                delay = self.hold.probe_seconds
            await self.store.reschedule(row, delay, count=False, error=error)
        elif decision.action is Action.RETRY:
            if not _expected(exc):
                log.error("delivering outbox row %s (%s) failed", row.id, row.kind,
                          exc_info=exc)
            log.warning("outbox row %s (%s) failed, retry in %.1fs: %s", row.id, row.kind,
                        decision.delay, error)
            await self.store.reschedule(row, decision.delay, count=True, error=error)
        else:
            await self._bury(row, error, exc)

    async def _bury(self, row: OutboxItem, error: str, exc: BaseException) -> None:
        log.error("outbox row %s (%s) is a dead letter: %s", row.id, row.kind, error)
        self._metrics.failures.inc()

        async def tell_agents(session: AsyncSession, ticket_id: int | None) -> None:
            # Unless the failure is itself in the agent chat.
            if ticket_id and not is_agent_chat_lane(row.lane):
                enqueue(session, Kind.DEAD_LETTER, agent_lane(ticket_id),
                        {"ticket_id": ticket_id, "row_id": row.id, "what": what_of(row.kind),
                         "why": why_of(exc)})

        await self.store.bury(row, error, tell_agents)


def _expected(exc: Exception) -> bool:
    """Failures that are part of life (logged in one line, not with a traceback)."""
    return (isinstance(exc, BridgeError | TelegramAPIError | TelegramNetworkError | TimeoutError)
            or is_database_outage(exc))
