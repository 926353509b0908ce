"""Plusofon: no change feed. A cycle reads the open list whole (one request,
whose size grows with the open tickets) and then only the tickets whose list
entry changed, one request each (`poll_budget` per round, 100 by default)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.poll_cost import Measurement
from bot.db.session import create_engine
from bot.sandbox.plusofon import FakePlusofon
from bridges.registry import BridgeDeps, create_bridge
from bridges.state import BridgeStateBase


async def measure(open_tickets: int, changed: int) -> Measurement:
    with tempfile.TemporaryDirectory() as folder:
        engine = create_engine(f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}")
        try:
            async with engine.begin() as connection:
                await connection.run_sync(BridgeStateBase.metadata.create_all)
            async with FakePlusofon() as fake:
                ids = [fake.seed_ticket(f"ticket {n}", "text") for n in range(open_tickets)]
                bridge = await create_bridge("plusofon", BridgeDeps(engine=engine,
                                                                     env=fake.env()))
                try:
                    cursor = (await bridge.fetch_changes(None)).cursor
                    for ticket_id in ids[:changed]:
                        fake.support_answers(ticket_id, "an answer")
                    requests, served = len(fake.requests), fake.response_bytes
                    events = rounds = 0
                    while True:  # one cycle: the scheduler follows `more` at once
                        changes = await bridge.fetch_changes(cursor)
                        cursor, rounds = changes.cursor, rounds + 1
                        events += len(changes.events)
                        if not changes.more:
                            break
                finally:
                    await bridge.aclose()
                calls = len(fake.requests) - requests
                size = (fake.response_bytes - served) / 1024
                return Measurement(calls=calls, events=events,
                                   note=f"{rounds} round(s); {size:,.0f} KiB received")
        finally:
            await engine.dispose()
