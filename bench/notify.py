"""1,000 helpdesk replies to 1,000 different customers, through a fake Bot API
server that enforces Telegram's limits (429 past ~30 messages/s overall,
~1/s per chat, 20/min per group).

Prints the time from the poll that finds the replies until every customer
has theirs, and the 429s the bot collected. Telegram's own limit makes the
floor 1,000 / 30 per second = 33.3 s; the target is at most 36 s with no 429.

    python -m bench.notify [--replies N] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

from bot.app import build_app
from bot.config import Settings
from bot.db.migrate import upgrade
from bot.db.models import Customer, Ticket
from bridges.base import AgentIdentity, CustomerIdentity, NewTicket
from tests.fakes.telegram_server import FakeTelegramServer

TOKEN = "123456:BENCH-token"
AGENT_CHAT = -1009000000001
FIRST_CUSTOMER = 100_000


async def run(replies: int, database_url: str) -> None:
    await asyncio.to_thread(upgrade, database_url)
    async with FakeTelegramServer(token=TOKEN) as tg:
        tg.add_supergroup(AGENT_CHAT, "Support", is_forum=True, members=[1])
        customers = range(FIRST_CUSTOMER, FIRST_CUSTOMER + replies)
        for user_id in customers:
            tg.add_user(user_id, f"Customer {user_id}", None, "en")
        settings = Settings(_env_file=None, telegram_bot_token=TOKEN,  # type: ignore[call-arg]
                            telegram_api_base=tg.base_url, agent_chat_id=AGENT_CHAT,
                            database_url=database_url, provider="local", http_listen="")
        app = await build_app(settings)
        try:
            await seed(app, customers)
            await app.sync.poll_once()  # the cursor starts now
            agent = AgentIdentity("desk", "Helpdesk agent")
            async with app.sessionmaker() as session:
                remote_ids = list(await session.scalars(select(Ticket.remote_ticket_id)))
            for remote_id in remote_ids:
                await app.bridge.post_agent_reply(str(remote_id), agent, "Your answer is here")
            tg.enforce_limits = True
            stop = asyncio.Event()
            delivery = asyncio.create_task(app.outbox.run(stop))
            started = time.perf_counter()
            await app.poll_provider()

            def delivered(server: FakeTelegramServer) -> int:
                return sum(1 for r in server.sent
                           if r["chat_id"] > 0 and "Your answer is here" in (r["text"] or ""))

            await tg.wait_for(lambda s: delivered(s) >= replies, timeout=600)
            took = time.perf_counter() - started
            stop.set()
            app.signal.notify()
            delivery.cancel()
        finally:
            await app.aclose()
    floor = replies / 30
    print(f"{'replies':>8} {'seconds':>8} {'floor s':>8} {'target s':>9} {'429s':>5} "
          f"{'msgs/s':>7}")
    print(f"{replies:>8} {took:>8.1f} {floor:>8.1f} {floor * 1.08:>9.1f} {tg.limit_429s:>5} "
          f"{replies / took:>7.1f}")


async def seed(app, customers: range) -> None:  # type: ignore[no-untyped-def]
    """Customers with an open ticket each, at the desk and in the bot's tables."""
    tickets = []
    for user_id in customers:
        remote = await app.bridge.create_ticket(NewTicket(
            CustomerIdentity(str(user_id), f"Customer {user_id}"), f"Question {user_id}", "?"))
        tickets.append((user_id, remote))
    async with app.sessionmaker.begin() as session:
        for user_id, remote in tickets:
            customer = Customer(tg_user_id=user_id, full_name=f"Customer {user_id}",
                                language="en")
            session.add(customer)
            await session.flush()
            session.add(Ticket(provider="local", remote_ticket_id=remote.remote_ticket_id,
                               number=remote.number, customer_id=customer.id,
                               subject=remote.subject))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replies", type=int, default=1000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(folder) / 'notify.db'}"
        asyncio.run(run(args.replies, url))


if __name__ == "__main__":
    main()
