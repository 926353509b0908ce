"""The pacer: calls to one chat go by priority, then arrival; patience ends
in SendLater with nothing booked."""

from __future__ import annotations

import asyncio

import pytest

from bot.telegram.limits import Limits, LocalBudget
from bot.telegram.pacer import SendLater, SendPriority, TelegramPacer, sending

GROUP = -1001
# A group that takes one call every 0.2 s.
SLOW_GROUP = Limits(group_per_minute=1, group_burst=1, group_window=0.2, chat_interval=0.2)


async def test_a_new_ticket_overtakes_queued_card_edits() -> None:
    pacer = TelegramPacer(LocalBudget(SLOW_GROUP))
    order: list[str] = []

    async def call(name: str, priority: SendPriority) -> None:
        with sending(priority):
            await pacer.acquire(GROUP)
        order.append(name)

    await call("first", SendPriority.CARD)  # opens the group's window
    cards = [asyncio.create_task(call(f"card{i}", SendPriority.CARD)) for i in range(3)]
    await asyncio.sleep(0.05)  # the cards queue up behind the window
    mirror = asyncio.create_task(call("mirror", SendPriority.HELPDESK))
    await asyncio.sleep(0.01)
    topic = asyncio.create_task(call("topic", SendPriority.NEW_TICKET))
    await asyncio.gather(*cards, mirror, topic)
    assert order == ["first", "topic", "mirror", "card0", "card1", "card2"]


async def test_same_priority_keeps_arrival_order() -> None:
    pacer = TelegramPacer(LocalBudget(SLOW_GROUP))
    order: list[int] = []

    async def call(n: int) -> None:
        await pacer.acquire(GROUP)
        order.append(n)

    tasks = []
    for n in range(4):
        tasks.append(asyncio.create_task(call(n)))
        await asyncio.sleep(0.001)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3]


async def test_patience_gives_the_call_back_without_booking() -> None:
    budget = LocalBudget(SLOW_GROUP)
    pacer = TelegramPacer(budget)
    await pacer.acquire(GROUP)
    with sending(SendPriority.HELPDESK, patience=0.05), pytest.raises(SendLater) as raised:
        await pacer.acquire(GROUP)
    assert 0 < raised.value.delay <= 0.2
    assert pacer.waiting(GROUP) == 0
    await asyncio.sleep(0.2)
    assert await budget.take(GROUP) == 0  # nothing was booked by the call that gave up


async def test_a_cancelled_waiter_leaves_the_queue_and_wakes_the_next() -> None:
    pacer = TelegramPacer(LocalBudget(SLOW_GROUP))
    await pacer.acquire(GROUP)
    first = asyncio.create_task(pacer.acquire(GROUP))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(pacer.acquire(GROUP))
    await asyncio.sleep(0.01)
    first.cancel()
    await asyncio.wait_for(second, 1.0)
    assert pacer.waiting(GROUP) == 0
