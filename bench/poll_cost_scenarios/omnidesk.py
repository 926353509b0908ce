"""Omnidesk: HTTP requests one poll cycle makes, counted at the fake Omnidesk.

The fake's store is filled directly (10,000 cases without 10,000 requests);
a `FakeClock` drives the fake's dates and rate windows and the bridge's
pacing, so an hour of polling runs in seconds.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy.ext.asyncio import create_async_engine

from bench.poll_cost import Measurement
from bot.sandbox.omnidesk import FakeClock, FakeOmnidesk
from bridges.base import MessageAdded
from bridges.errors import RateLimited
from bridges.omnidesk import OmnideskBridge, OmnideskSettings
from bridges.state import BridgeState, BridgeStateBase

POLL_INTERVAL = 15.0  # the default POLL_INTERVAL_SECONDS
FOLLOW_UPS = 20  # rounds the scheduler polls again while the bridge says `more`
HOUR = 3600.0


@asynccontextmanager
async def omnidesk(clock: FakeClock, *, calls_per_hour: int
                   ) -> AsyncIterator[tuple[FakeOmnidesk, OmnideskBridge]]:
    with tempfile.TemporaryDirectory() as folder:
        engine = create_async_engine(f"sqlite+aiosqlite:///{Path(folder) / 'state.db'}")
        async with engine.begin() as connection:
            await connection.run_sync(BridgeStateBase.metadata.create_all)
        try:
            async with FakeOmnidesk(clock=clock, calls_per_hour=calls_per_hour) as desk:
                bridge = OmnideskBridge(OmnideskSettings.from_env(desk.env()),
                                        BridgeState(engine, "omnidesk"), clock=clock)
                try:
                    yield desk, bridge
                finally:
                    await bridge.aclose()
        finally:
            await engine.dispose()


async def measure(open_tickets: int, changed: int) -> Measurement:
    clock = FakeClock()
    async with omnidesk(clock, calls_per_hour=10_000_000) as (desk, bridge):
        ids = desk.seed_cases(open_tickets, until=clock() - 60)
        cursor = (await bridge.fetch_changes(None)).cursor
        # A first cycle with one change: staff names cached, as in steady state.
        clock.advance(POLL_INTERVAL)
        desk.staff_replies(ids[-1], "warm-up")
        clock.advance(POLL_INTERVAL)
        cursor = (await bridge.fetch_changes(cursor)).cursor
        clock.advance(POLL_INTERVAL)
        for case_id in ids[:changed]:
            desk.staff_replies(case_id, "a reply typed in Omnidesk")
        clock.advance(POLL_INTERVAL)
        desk.reset_counts()
        changes = await bridge.fetch_changes(cursor)
        listings = desk.count("GET /api/cases.json")
        reads = desk.count("GET /api/cases/{case_id}/messages.json")
        return Measurement(
            calls=desk.count(), events=len(changes.events),
            note=f"{listings} listing + {reads} message reads; more={changes.more}")


async def extra() -> list[str]:
    """An hour and a half of polling every 15 s at 500 calls per hour, for
    several loads: what notification latency the poller sustains, and that
    it slows down instead of running `api_calls_left` out."""
    lines = [
        "budget 500/h, 10,000 open cases, poll every 15 s, reserve kept for sends: 50 calls",
        f"{'changed/h':>10} {'latency mean':>13} {'p95':>6} {'max':>6} {'polls':>6} "
        f"{'paced':>6} {'calls/h':>8} {'min calls_left':>15} {'429s':>5}",
    ]
    for per_hour in (0, 60, 120, 240, 360, 600):
        lines.append(await _simulate(per_hour))
    lines.append("latency = change in Omnidesk → event returned by fetch_changes (poll "
                 "interval included); 'paced' = cycles the bridge refused to spend")
    return lines


async def _simulate(per_hour: int, hours: float = 1.5) -> str:
    """Changes spread evenly (at odd moments between polls), each on another
    case; the poller polls every 15 s and follows `more` like the scheduler."""
    clock = FakeClock()
    clock.now = (clock() // HOUR) * HOUR  # the start of an hourly window
    async with omnidesk(clock, calls_per_hour=500) as (desk, bridge):
        ids = desk.seed_cases(10_000, until=clock() - 60)
        cursor = (await bridge.fetch_changes(None)).cursor
        assert cursor is not None
        started = clock()
        spacing = HOUR / per_hour if per_hour else hours * HOUR
        # Evenly spread, at moments scattered over the poll interval.
        change_times = [started + spacing * (n + (n * 0.618034) % 1)
                        for n in range(int(hours * per_hour))]
        changed_at: dict[str, float] = {}
        latencies: list[float] = []
        polls = paced = 0
        lowest = desk.calls_left or 0
        next_poll = started + POLL_INTERVAL
        while next_poll <= started + hours * HOUR:
            while change_times and change_times[0] <= next_poll:
                clock.now = change_times.pop(0)
                text = f"change {len(changed_at)}"
                desk.staff_replies(ids[(len(changed_at) * 7919) % len(ids)], text)
                changed_at[text] = clock()
            clock.now = next_poll
            for _ in range(FOLLOW_UPS):
                try:
                    changes = await bridge.fetch_changes(cursor)
                except RateLimited:
                    paced += 1
                    break
                polls += 1
                cursor = changes.cursor or cursor
                latencies += [clock() - changed_at[e.message.text] for e in changes.events
                              if isinstance(e, MessageAdded) and e.message.text in changed_at]
                lowest = min(lowest, desk.calls_left or 0)
                if not changes.more:
                    break
            next_poll += POLL_INTERVAL
        calls_per_hour = desk.count() / hours
        if latencies:
            ordered = sorted(latencies)
            p95 = ordered[int(0.95 * (len(ordered) - 1))]
            timing = f"{statistics.mean(latencies):>12.0f}s {p95:>5.0f}s {ordered[-1]:>5.0f}s"
        else:
            timing = f"{'—':>13} {'—':>6} {'—':>6}"
        backlog = len(changed_at) - len(latencies)
        note = f"  ({backlog} changes not yet delivered)" if backlog > per_hour / 60 else ""
        return (f"{per_hour:>10} {timing} {polls:>6} {paced:>6} {calls_per_hour:>8.0f} "
                f"{lowest:>15} {desk.rate_limited:>5}{note}")
