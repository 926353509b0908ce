"""Zenlix: `ticket_list` has no "since" filter and says nothing about comments
(providers/zenlix.md), so the only way to see a new comment is to read the
ticket's comments. The bridge reads busy tickets every cycle and quiet ones
less and less often (at most ZENLIX_IDLE_MAX_CYCLES apart), within
ZENLIX_CALLS_PER_CYCLE requests per fetch; past that it says `more` and the
bot polls again at once (up to 20 rounds, bot.app.MAX_POLL_ROUNDS).

Here a *cycle* is one scheduled poll with its follow-up rounds, counted in
HTTP requests at the fake Zenlix; latencies are in cycles and in seconds at
the default POLL_INTERVAL_SECONDS=15. Every open ticket is one the bot
bridges (the bridge never reads the comments of tickets it did not create).
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench.poll_cost import Measurement
from bot.sandbox.zenlix import FakeZenlix
from bridges.base import CustomerIdentity, MessageAdded
from bridges.state import BridgeStateBase
from bridges.zenlix import ZenlixBridge, ZenlixSettings
from bridges.zenlix.records import TicketRecord
from tests.bridges.harness_zenlix import ZenlixWorld, populate, zenlix_env

SIZES = (100, 1_000, 5_000)
CHANGED = (0, 100)
POLL_INTERVAL_SECONDS = 15.0
MAX_ROUNDS = 20  # bot.app.MAX_POLL_ROUNDS
WORST_CASE_SAMPLE = 20

# The adaptive lab of each size, settled once and shared by the measurements
# and the comparison (settling 5,000 tickets is most of the bench's time).
_labs: dict[int, Lab] = {}


class Lab:
    """A fake Zenlix with `open_tickets` bridged tickets, and a bridge polling it."""

    def __init__(self, fake: FakeZenlix, world: ZenlixWorld, bridge: ZenlixBridge,
                 engine: AsyncEngine, folder: tempfile.TemporaryDirectory[str],
                 tickets: list[str]) -> None:
        self.fake, self.world, self.bridge = fake, world, bridge
        self._engine, self._folder = engine, folder
        self.tickets = tickets
        self.cursor = ""
        self.cycles = 0

    @classmethod
    async def open(cls, open_tickets: int, *, adaptive: bool) -> Lab:
        fake = FakeZenlix()
        await fake.start()
        world = populate(fake)
        folder = tempfile.TemporaryDirectory()
        engine = create_async_engine(f"sqlite+aiosqlite:///{Path(folder.name) / 'bench.db'}")
        async with engine.begin() as connection:
            await connection.run_sync(BridgeStateBase.metadata.create_all)
        bridge = ZenlixBridge(ZenlixSettings.from_env(zenlix_env(fake, world)), engine,
                              adaptive=adaptive)
        # Filled directly: creating 5,000 tickets through the API takes 5,000
        # seconds (one per second, providers/zenlix.md).
        tickets, records = [], {}
        for number in range(open_tickets):
            ticket_hash = fake.seed_ticket(world.anna, f"ticket {number}", by=world.service)
            fake.comment_as(world.olga, ticket_hash, "a first answer")
            records[ticket_hash] = TicketRecord(
                id_ticket=fake.ticket(ticket_hash).id, customer_ref=f"tg:{number}",
                client=world.anna, subject=f"ticket {number}")
            tickets.append(ticket_hash)
        await bridge.records.save_tickets(records)
        lab = cls(fake, world, bridge, engine, folder, tickets)
        # Comments of the second the cursor starts in count as new (better
        # twice, deduplicated by id, than never): start a second later.
        await asyncio.sleep(1.0)
        started = await bridge.fetch_changes(None)
        assert started.cursor is not None
        lab.cursor = started.cursor
        return lab

    async def close(self) -> None:
        await self.bridge.aclose()
        await self._engine.dispose()
        await self.fake.stop()
        self._folder.cleanup()

    async def cycle(self) -> tuple[int, list[str], int, int]:
        """One scheduled poll: (requests, ids of messages found, rounds, events)."""
        before = self.fake.request_count
        found: list[str] = []
        events = 0
        for rounds in range(1, MAX_ROUNDS + 1):  # noqa: B007
            changes = await self.bridge.fetch_changes(self.cursor)
            assert changes.cursor is not None
            self.cursor = changes.cursor
            events += len(changes.events)
            found += [e.message.remote_ticket_id for e in changes.events
                      if isinstance(e, MessageAdded)]
            if not changes.more:
                break
        self.cycles += 1
        return self.fake.request_count - before, found, rounds, events

    async def settle(self, cycles: int | None = None) -> None:
        """Poll until quiet tickets are read at their longest interval."""
        if cycles is None:
            cycles = self.bridge.settings.idle_max_cycles + 1 if self.bridge.schedule.adaptive \
                else 1
        for _ in range(cycles):
            await self.cycle()

    async def cost(self) -> tuple[float, int]:
        """Mean requests per cycle over one longest interval, and the most rounds."""
        span = self.bridge.settings.idle_max_cycles if self.bridge.schedule.adaptive else 2
        costs = [await self.cycle() for _ in range(span)]
        return sum(c[0] for c in costs) / len(costs), max(c[2] for c in costs)

    async def cycles_until_read(self, targets: Sequence[str]) -> int:
        """Comment on `targets` now; cycles until every comment is found."""
        for ticket_hash in targets:
            self.fake.comment_as(self.world.olga, ticket_hash, "an answer typed in Zenlix")
        waiting = set(targets)
        cycles = 0
        while waiting:
            cycles += 1
            _, found, _, _ = await self.cycle()
            waiting -= set(found)
            if cycles > 1_000:
                raise RuntimeError("comments never found")
        return cycles

    async def latency_after_customer(self, answered_after: int = 4) -> int:
        """The usual case: customers write (through the bot), an agent answers
        in Zenlix `answered_after` cycles later; the worst cycles until read."""
        sample = random.Random(11).sample(self.tickets, min(WORST_CASE_SAMPLE,
                                                            len(self.tickets)))
        customer = CustomerIdentity("tg:1", "Anna Customer")
        for ticket_hash in sample:
            await self.bridge.post_customer_message(ticket_hash, customer, "any news?")
        for _ in range(answered_after):
            await self.cycle()
        return await self.cycles_until_read(sample)

    async def worst_latency(self) -> int:
        """The worst case: comments on tickets read in the cycle just done,
        which wait their whole interval before being read again."""
        before = len(self.fake.bodies)
        await self.cycle()
        just_read = [body["ticket_hash"] for body in self.fake.bodies[before:]
                     if body["mode"] == "get_ticket_comments"]
        sample = random.Random(7).sample(just_read, min(WORST_CASE_SAMPLE, len(just_read)))
        return await self.cycles_until_read(sample)


def seconds(cycles: int) -> str:
    return f"{cycles * POLL_INTERVAL_SECONDS:.0f} s"


async def settled_lab(open_tickets: int) -> Lab:
    for size in [size for size in _labs if size != open_tickets]:
        await _labs.pop(size).close()
    if open_tickets not in _labs:
        _labs[open_tickets] = await Lab.open(open_tickets, adaptive=True)
        await _labs[open_tickets].settle()
    return _labs[open_tickets]


async def measure(open_tickets: int, changed: int) -> Measurement:
    """One cycle of the settled adaptive schedule right after `changed`
    tickets got a comment typed in Zenlix; then cycles until all are read."""
    lab = await settled_lab(open_tickets)
    targets = random.Random(changed).sample(lab.tickets, changed)
    for ticket_hash in targets:
        lab.fake.comment_as(lab.world.olga, ticket_hash, "an answer typed in Zenlix")
    calls, found, rounds, events = await lab.cycle()
    waiting, cycles = set(targets) - set(found), 1
    while waiting:
        _, more, _, _ = await lab.cycle()
        waiting -= set(more)
        cycles += 1
    note = f"{rounds} round(s)"
    if changed:
        note += f"; all {changed} new comments read within {cycles} cycle(s) " \
                f"({seconds(cycles)})"
        await lab.settle()  # the answered tickets are busy for a while: let them calm down
    return Measurement(calls=calls, events=events, note=note)


async def extra() -> list[str]:
    # The defaults, as a deployment without ZENLIX_CALLS_PER_CYCLE etc. has them.
    settings = ZenlixSettings.from_env({"ZENLIX_BASE_URL": "http://zenlix.invalid",
                                        "ZENLIX_LOGIN": "-", "ZENLIX_PASSWORD": "-"})
    lines = [
        f"budget {settings.calls_per_cycle} requests per fetch, quiet tickets read at most "
        f"{settings.idle_max_cycles} cycles apart; a cycle every {POLL_INTERVAL_SECONDS:.0f} s",
        f"{'schedule':<9} {'open':>6} {'requests/cycle':>15} {'rounds':>7} "
        f"{'worst latency, quiet ticket':>28}  {'answer 1 min after the customer wrote':>38}",
    ]
    for open_tickets in SIZES:
        for adaptive in (True, False):
            if adaptive:
                lab = await settled_lab(open_tickets)
            else:
                lab = await Lab.open(open_tickets, adaptive=False)
                await lab.settle()
            try:
                mean, rounds = await lab.cost()
                worst = await lab.worst_latency()
                busy = await lab.latency_after_customer()
            finally:
                if not adaptive:
                    await lab.close()
            name = "adaptive" if adaptive else "fixed"
            lines.append(f"{name:<9} {open_tickets:>6} {mean:>15.0f} {rounds:>7} "
                         f"{f'{worst} cycles = {seconds(worst)}':>28}  "
                         f"{f'{busy} cycles = {seconds(busy)}':>38}")
    for size in list(_labs):
        await _labs.pop(size).close()
    return lines
