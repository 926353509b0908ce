"""The one pacer every Telegram call that sends or changes something waits on.

Calls to one chat queue in order of priority, then of arrival: when the
agent group's budget frees a slot, a new ticket's topic goes before a
mirror of an old conversation, and a card edit goes last. Who is sending
says how urgent it is and how long it may wait, through two context
variables set around the call (`sending`): handler replies wait as long as
it takes (they are answers to a person who just acted), outbox deliveries
wait briefly and are otherwise put back (`SendLater`) so that their row is
retried later without holding a delivery slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import itertools
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

from bot.telegram.limits import Budget


class SendPriority(enum.IntEnum):
    """Lower goes first when a chat's budget frees a slot."""

    NEW_TICKET = 0  # a new ticket's topic and card: agents must see new work first
    CUSTOMER = 1  # what a customer wrote; replies to someone who just acted
    HELPDESK = 2  # mirrors of helpdesk-side replies, notes and notices
    CARD = 3  # card edits, coalesced: only the newest state matters


_priority: ContextVar[SendPriority] = ContextVar("send_priority", default=SendPriority.CUSTOMER)
_patience: ContextVar[float | None] = ContextVar("send_patience", default=None)


@contextlib.contextmanager
def sending(priority: SendPriority, patience: float | None = None) -> Iterator[None]:
    """Calls made inside the block queue with `priority`, and give up with
    `SendLater` when they would wait longer than `patience` seconds."""
    priority_token = _priority.set(priority)
    patience_token = _patience.set(patience)
    try:
        yield
    finally:
        _priority.reset(priority_token)
        _patience.reset(patience_token)


def current_patience() -> float | None:
    return _patience.get()


REQUEUE_EARLY_SECONDS = 0.5


class SendLater(Exception):
    """The call could not go within its patience: try again in `delay` seconds.
    Nothing was sent."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"Telegram budget busy for {delay:.1f}s")
        self.delay = delay


@dataclass(order=True, slots=True)
class _Waiter:
    priority: int
    seq: int
    wake: asyncio.Event = field(compare=False, default_factory=asyncio.Event)


class TelegramPacer:
    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self._queues: dict[int | None, list[_Waiter]] = {}
        self._seq = itertools.count()

    def waiting(self, chat_id: int | None) -> int:
        """Calls of this process queued for `chat_id` now."""
        return len(self._queues.get(chat_id, ()))

    async def acquire(self, chat_id: int | None) -> None:
        """Return once a send to `chat_id` is booked (None: one that counts
        only against the overall limit); raise SendLater past the patience."""
        loop = asyncio.get_running_loop()
        patience = _patience.get()
        deadline = None if patience is None else loop.time() + patience
        queue = self._queues.setdefault(chat_id, [])
        waiter = _Waiter(_priority.get(), next(self._seq))
        heapq.heappush(queue, waiter)
        try:
            while True:
                wait: float | None = None
                if queue[0] is waiter:
                    wait = await self.budget.take(chat_id)
                    if wait <= 0:
                        return
                if deadline is not None and patience is not None:
                    left = deadline - loop.time()
                    if left <= 0 or (wait is not None and wait > left):
                        # Come back a little before the slot is within patience
                        # again, so that the caller (by its priority) is first
                        # in line when it opens.
                        raise SendLater(max(0.05, wait - patience - REQUEUE_EARLY_SECONDS)
                                        if wait is not None else REQUEUE_EARLY_SECONDS)
                    wait = left if wait is None else wait
                waiter.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.wake.wait(), wait)
        finally:
            queue.remove(waiter)
            heapq.heapify(queue)
            if queue:
                queue[0].wake.set()
            elif self._queues.get(chat_id) is queue:
                del self._queues[chat_id]
