"""The local desk: the event log makes a cycle cost a handful of statements."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import event

from bench.poll_cost import Measurement
from bot.db.migrate import upgrade
from bot.db.session import create_engine
from bridges.base import AgentIdentity, CustomerIdentity, NewTicket
from bridges.local import LocalDeskBridge


async def measure(open_tickets: int, changed: int) -> Measurement:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        await asyncio.to_thread(upgrade, url)
        engine = create_engine(url)
        try:
            desk = LocalDeskBridge(engine)
            customer = CustomerIdentity(customer_ref="1", full_name="Bench")
            ids = []
            for number in range(open_tickets):
                ticket = await desk.create_ticket(NewTicket(customer, f"ticket {number}", "x"))
                ids.append(ticket.remote_ticket_id)
            cursor = (await desk.fetch_changes(None)).cursor
            agent = AgentIdentity("a", "Agent")
            for remote_id in ids[:changed]:
                await desk.post_agent_reply(remote_id, agent, "a reply")
            statements = 0

            def count(*_: Any) -> None:
                nonlocal statements
                statements += 1

            event.listen(engine.sync_engine, "before_cursor_execute", count)
            changes = await desk.fetch_changes(cursor)
            event.remove(engine.sync_engine, "before_cursor_execute", count)
            return Measurement(calls=statements, unit="SQL statements",
                               events=len(changes.events))
        finally:
            await engine.dispose()
