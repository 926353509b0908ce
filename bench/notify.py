"""1,000 helpdesk replies to 1,000 different customers, through a fake Bot API
server that enforces Telegram's limits (429 past ~30 messages/s overall,
~1/s per chat, 20/min per group).

The bot runs as its own process (`python -m bot run`, local desk, polling
every second). Each customer has an open ticket; once the bot is up, the
desk gets an agent's reply on every ticket in one go. The clock runs from
that moment to the moment the last customer has theirs.
Telegram's own limit makes the floor 1,000 / 30 per second = 33.3 s; the
target is at most 36 s with no 429. "first s" is when the first customer
had their reply (the poll, the import, the first claim); "after first" is
the rate from then on.

    python -m bench.notify [--replies N] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.common import (
    AGENT_CHAT,
    TOKEN,
    bot_env,
    machine,
    scratch_database,
    start_process,
    stop_process,
)
from bot.db.models import Customer, PollCursor, Ticket
from bot.db.session import create_engine
from bot.sandbox.telegram_server import FakeTelegramServer
from bridges.base import CustomerIdentity, HelpdeskBridge, NewTicket
from bridges.local.models import LocalEvent, LocalMessage
from bridges.registry import BridgeDeps, create_bridge

FIRST_CUSTOMER = 100_000
ANSWER = "Your answer is here"


async def run(replies: int, database_url: str | None) -> None:
    async with (FakeTelegramServer(token=TOKEN) as tg,
                scratch_database(database_url, "notify") as url):
        tg.add_supergroup(AGENT_CHAT, "Support", is_forum=True, members=[1])
        customers = range(FIRST_CUSTOMER, FIRST_CUSTOMER + replies)
        for user_id in customers:
            tg.add_user(user_id, f"Customer {user_id}", None, "en")
        engine = create_engine(url)
        bridge = await create_bridge("local", BridgeDeps(engine=engine))
        with tempfile.TemporaryDirectory() as folder:
            log = Path(folder) / "bot.log"
            try:
                remote_ids = await seed(engine, bridge, customers)
                bot = start_process("bot", bot_env(tg.base_url, url), log, "run")
                try:
                    await tg.wait_for(lambda s: any(m == "getUpdates" for m, _ in s.requests),
                                      timeout=120)
                    tg.enforce_limits = True
                    await answer_all(engine, remote_ids)
                    started = time.perf_counter()  # the replies are at the desk (committed)

                    def delivered(server: FakeTelegramServer) -> int:
                        return sum(1 for r in server.sent
                                   if r["chat_id"] > 0 and ANSWER in (r["text"] or ""))

                    await tg.wait_for(lambda s: delivered(s) >= 1, timeout=600)
                    first = time.perf_counter() - started
                    await tg.wait_for(lambda s: delivered(s) >= replies, timeout=600)
                    took = time.perf_counter() - started
                finally:
                    stop_process(bot)
            except Exception:
                print(log.read_text()[-3000:] if log.exists() else "no bot log")
                raise
            finally:
                await bridge.aclose()
                await engine.dispose()
    floor = replies / 30
    database = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(f"# {machine()}")
    print(f"{'database':<10} {'replies':>8} {'first s':>8} {'seconds':>8} {'floor s':>8} "
          f"{'target s':>9} {'429s':>5} {'msgs/s':>7} {'after first':>11}")
    print(f"{database:<10} {replies:>8} {first:>8.1f} {took:>8.1f} {floor:>8.1f} "
          f"{floor * 1.08:>9.1f} {tg.limit_429s:>5} {replies / took:>7.1f} "
          f"{(replies - 1) / (took - first):>11.1f}")


async def answer_all(engine: AsyncEngine, remote_ids: list[str]) -> None:
    """An agent reply on every ticket, committed at once (what the local
    desk writes for `post_agent_reply`: the message and its change event)."""
    now = datetime.now(UTC)
    async with engine.begin() as connection:
        for remote_id in remote_ids:
            message_id = (await connection.execute(insert(LocalMessage).values(
                ticket_id=int(remote_id), author_kind="agent", author_ref="desk",
                author_name="Helpdesk agent", text=ANSWER, attachments=[], created_at=now,
            ).returning(LocalMessage.id))).scalar_one()
            await connection.execute(insert(LocalEvent).values(
                ticket_id=int(remote_id), kind="message_added", message_id=message_id,
                created_at=now))


async def seed(engine: AsyncEngine, bridge: HelpdeskBridge, customers: range) -> list[str]:
    """An open ticket per customer, at the desk and in the bot's tables, with
    the bot's poll cursor past them (only the replies are news)."""
    remote = [await bridge.create_ticket(NewTicket(
        CustomerIdentity(str(user_id), f"Customer {user_id}"), f"Question {user_id}", "?"))
        for user_id in customers]
    changes = await bridge.fetch_changes(None)
    while changes.more:
        changes = await bridge.fetch_changes(changes.cursor)
    async with engine.begin() as connection:
        await connection.execute(insert(Customer), [
            {"tg_user_id": user_id, "full_name": f"Customer {user_id}", "language": "en"}
            for user_id in customers])
        ids = dict((await connection.execute(select(Customer.tg_user_id, Customer.id))).all())
        await connection.execute(insert(Ticket), [
            {"provider": "local", "remote_ticket_id": ticket.remote_ticket_id,
             "number": ticket.number, "customer_id": ids[user_id],
             "subject": ticket.subject}
            for user_id, ticket in zip(customers, remote, strict=True)])
        await connection.execute(insert(PollCursor).values(provider="local",
                                                           cursor=changes.cursor))
    return [ticket.remote_ticket_id for ticket in remote]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replies", type=int, default=1000)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"),
                        help="PostgreSQL (postgresql+asyncpg://...); SQLite by default")
    args = parser.parse_args()
    asyncio.run(run(args.replies, args.database_url))


if __name__ == "__main__":
    main()
