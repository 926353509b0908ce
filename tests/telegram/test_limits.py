"""Telegram's limits as budgets: the arithmetic on a simulated clock, then the
same rules against the real clock for the local budget and the Redis one
(shrunk in time so that a test takes a couple of seconds)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import pytest

from bot.telegram.limits import Budget, Limits, LocalBudget, RedisBudget

GROUP = -1001


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_private_chat_short_burst_then_one_a_second() -> None:
    clock = Clock()
    budget = LocalBudget(clock=clock)
    for _ in range(2):
        assert await budget.take(42) == 0
    assert 0.9 < await budget.take(42) <= 1.0  # the burst is spent: the next in a second
    clock.now += 0.1
    assert await budget.take(43) == 0  # another chat: only the overall pace
    clock.now += 0.9
    assert await budget.take(42) == 0
    assert await budget.take(42) > 0


async def test_a_refused_take_books_nothing() -> None:
    clock = Clock()
    budget = LocalBudget(clock=clock)
    for _ in range(2):
        await budget.take(42)
    for _ in range(10):
        assert await budget.take(42) > 0
    clock.now += 1.0
    assert await budget.take(42) == 0


async def test_saturated_group_uses_all_twenty_of_every_minute_and_never_more() -> None:
    clock = Clock()
    budget = LocalBudget(clock=clock)
    sent: list[float] = []
    while clock.now < 1000 + 600:  # ten minutes of a group that always has something to send
        if await budget.take(GROUP) == 0:
            sent.append(clock.now)
        clock.now += 0.01
    for start in sent:
        assert sum(1 for t in sent if start <= t < start + 60) <= 20
    assert len(sent) >= 198  # 20 a minute for ten minutes (the last slot may fall outside)
    gaps = [b - a for a, b in itertools.pairwise(sent[40:])]
    assert max(gaps) <= 3.05  # in the steady state one every three seconds, evenly


async def test_quiet_group_answers_at_once_and_a_busy_one_spreads_out() -> None:
    clock = Clock()
    budget = LocalBudget(clock=clock)
    times = []
    for _ in range(8):
        while (wait := await budget.take(GROUP)) > 0:
            clock.now += wait
        times.append(clock.now - 1000)
    # Five at Telegram's pace of one a second in one chat, then one every three.
    assert times == pytest.approx([0, 1, 2, 3, 4, 7, 10, 13])


async def test_overall_thirty_a_second() -> None:
    clock = Clock()
    budget = LocalBudget(clock=clock)
    granted = 0
    for chat in range(1, 200):
        if await budget.take(chat) == 0:
            granted += 1
        clock.now += 0.01  # 100 attempts a second
    # 1.99 s at 30 a second, plus the three-send tolerance.
    assert 59 <= granted <= 63


async def test_pause_after_429() -> None:
    clock = Clock()
    budget = LocalBudget(clock=clock)
    await budget.pause(7, 5)
    assert 4.9 < await budget.take(7) <= 5
    assert await budget.take(8) == 0
    await budget.pause(None, 3)
    assert 2.9 < await budget.take(8) <= 3
    clock.now += 5
    assert await budget.take(7) == 0


async def test_peek_books_nothing() -> None:
    clock = Clock()
    budget = LocalBudget(clock=clock)
    for _ in range(5):
        assert await budget.peek(GROUP) == 0
    assert await budget.take(GROUP) == 0
    assert 0.9 < await budget.peek(GROUP) <= 1.0


# -- the same rules on the real clock, locally and through Redis ------------------------

# A "minute" of 1.5 s with at most 6 sends, 0.1 s apart while light, 0.25 s once busy.
SHRUNK = Limits(global_per_second=200, global_burst=1, chat_interval=0.1, chat_burst=1,
                group_per_minute=6, group_burst=2, group_window=1.5)


@pytest.fixture(params=["local", "redis"])
async def budget(request: pytest.FixtureRequest, redis_url: str | None
                 ) -> AsyncIterator[Budget]:
    if request.param == "local":
        yield LocalBudget(SHRUNK)
        return
    if not redis_url:
        pytest.skip("TEST_REDIS_URL is not set")
    redis_budget = RedisBudget.from_url(redis_url, bot_id=123, limits=SHRUNK)
    yield redis_budget
    await redis_budget.aclose()


async def _saturate(budgets: list[Budget], chat_id: int, seconds: float) -> list[float]:
    """Every budget (one per 'process') tries to send as fast as it is allowed."""
    sent: list[float] = []
    deadline = time.monotonic() + seconds

    async def sender(budget: Budget) -> None:
        while time.monotonic() < deadline:
            wait = await budget.take(chat_id)
            if wait == 0:
                sent.append(time.monotonic())
            else:
                await asyncio.sleep(min(wait, 0.05))

    await asyncio.gather(*(sender(b) for b in budgets))
    return sorted(sent)


async def test_group_window_on_the_real_clock(budget: Budget) -> None:
    sent = await _saturate([budget], GROUP, 3.2)
    window = SHRUNK.group_window
    for start in sent:
        assert sum(1 for t in sent if start <= t < start + window - 0.02) <= 6
    assert len(sent) >= 11  # ~6 per 1.5 s over 3.2 s, less scheduling slack


async def test_processes_sharing_redis_stay_within_one_budget(redis_url: str | None) -> None:
    if not redis_url:
        pytest.skip("TEST_REDIS_URL is not set")
    budgets = [RedisBudget.from_url(redis_url, bot_id=124, limits=SHRUNK) for _ in range(3)]
    try:
        sent = await _saturate(list(budgets), GROUP, 3.2)
    finally:
        for b in budgets:
            await b.aclose()
    for start in sent:
        assert sum(1 for t in sent if start <= t < start + SHRUNK.group_window - 0.02) <= 6
    # Three processes together send what one may, not three times as much.
    assert 11 <= len(sent) <= 16


async def test_redis_pause_is_shared(redis_url: str | None) -> None:
    if not redis_url:
        pytest.skip("TEST_REDIS_URL is not set")
    one, two = (RedisBudget.from_url(redis_url, bot_id=125, limits=SHRUNK) for _ in range(2))
    try:
        await one.pause(GROUP, 2.0)
        assert 1.5 < await two.take(GROUP) <= 2.0
        assert await two.take(77) == 0
    finally:
        await one.aclose()
        await two.aclose()


async def test_without_redis_a_process_keeps_its_own_budget() -> None:
    """Redis unreachable (nothing listens on that port): sending goes on with
    the process's own budget instead of failing."""
    budget = RedisBudget.from_url("redis://127.0.0.1:9/0", bot_id=126, limits=SHRUNK)
    try:
        assert await budget.take(GROUP) == 0
        assert await budget.take(GROUP) > 0  # the local budget's spacing holds
        await budget.pause(42, 1.0)
        assert await budget.take(42) > 0.5
    finally:
        await budget.aclose()
