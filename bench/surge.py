"""A surge: N customers (default 1,000) each send /start, press *New request*
and describe their problem, all at once, against a fake Bot API server that
enforces Telegram's limits (429 past ~30 messages/s overall, ~1/s per chat,
20/min per group, topic calls and edits counted).

The bot runs as its own process (`python -m bot run`, local desk). Each
customer acts as a person would: the next step once the bot has answered
the previous one. Every customer gets three messages (greeting with the
menu, "describe your problem", "request #N is open"), so Telegram's floor is
3·N / 30 per second: 100 s for 1,000 customers. Target: within 15 % of it,
no error replies, no 429.

The agent chat cannot keep up with that by design: 20 calls a minute, two
per new ticket (topic and card). The table shows how many tickets got their
topic while the customers were being answered, and how long they waited.

    python -m bench.surge [--customers N] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    AGENT_CHAT,
    TOKEN,
    bot_env,
    machine,
    scratch_database,
    start_process,
    stop_process,
)
from bot.sandbox.telegram_server import FakeTelegramServer

FIRST_CUSTOMER = 300_000
ERROR_WORDS = ("Something went wrong", "Что-то пошло не так")


async def customers_act(tg: FakeTelegramServer, users: range, opened: dict[int, float],
                        asked: dict[int, float], deadline: float) -> None:
    """Every customer, as a person would: /start; on the menu, *New request*;
    on "describe your problem", the problem; then wait for the number. One
    loop reads what the bot sent (a wait per customer would make the driver,
    not the bot, the bottleneck)."""
    step = dict.fromkeys(users, 0)
    for user_id in users:
        tg.user_sends_text(user_id, user_id, "/start")
    checked = 0
    while len(opened) < len(users):
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{len(opened)} of {len(users)} customers told their number")
        records = tg.sent[checked:]
        checked += len(records)
        for record in records:
            user_id = record["chat_id"]
            if user_id not in step:
                continue
            if step[user_id] == 0 and record.get("reply_markup"):
                markup: Any = record["reply_markup"]
                data = next(b["callback_data"] for row in markup["inline_keyboard"]
                            for b in row if b["callback_data"].endswith(":new"))
                tg.user_presses(user_id, (user_id, record["message_id"]), data)
                step[user_id] = 1
            elif step[user_id] == 1:
                asked[user_id] = time.perf_counter()
                tg.user_sends_text(user_id, user_id, f"Cust{user_id} cannot log in")
                step[user_id] = 2
            elif step[user_id] == 2 and "#" in (record["text"] or ""):
                opened[user_id] = time.perf_counter()
                step[user_id] = 3
        await asyncio.sleep(0.02)


async def watch_topics(tg: FakeTelegramServer, seen: dict[int, float],
                       stop: asyncio.Event) -> None:
    """When each customer's topic appeared in the agent chat."""
    checked = 0
    while not stop.is_set():
        for method, params in tg.requests[checked:]:
            if method == "createForumTopic":
                name = str(params.get("name", ""))
                marker = name.find("Cust")
                if marker >= 0:
                    digits = name[marker + 4:].split()[0]
                    if digits.isdigit():
                        seen.setdefault(int(digits), time.perf_counter())
        checked = len(tg.requests)
        await asyncio.sleep(0.1)


async def run(customers: int, database_url: str | None) -> None:
    async with (FakeTelegramServer(token=TOKEN) as tg,
                scratch_database(database_url, "surge") as url):
        tg.add_supergroup(AGENT_CHAT, "Support", is_forum=True, members=[1])
        users = range(FIRST_CUSTOMER, FIRST_CUSTOMER + customers)
        for n, user_id in enumerate(users):
            tg.add_user(user_id, f"Customer {n}", None, "ru" if n % 2 else "en")
        opened: dict[int, float] = {}
        asked: dict[int, float] = {}
        topics: dict[int, float] = {}
        with tempfile.TemporaryDirectory() as folder:
            log = Path(folder) / "bot.log"
            bot = start_process("bot", bot_env(tg.base_url, url), log, "run")
            stop = asyncio.Event()
            try:
                await tg.wait_for(lambda s: s.calls("getUpdates"), timeout=120)
                tg.enforce_limits = True
                watcher = asyncio.create_task(watch_topics(tg, topics, stop))
                started = time.perf_counter()
                await customers_act(tg, users, opened, asked, started + 1200)
                took = time.perf_counter() - started
                stop.set()
                await watcher
            except Exception:
                print(log.read_text()[-3000:] if log.exists() else "no bot log")
                raise
            finally:
                stop_process(bot)
    errors = sum(1 for r in tg.sent if r["chat_id"] > 0
                 and any(word in (r["text"] or "") for word in ERROR_WORDS))
    waits = sorted(topics[u] - asked[u] for u in topics if u in asked)
    floor = 3 * customers / 30
    database = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(f"# {machine()}")
    print(f"{'database':<10} {'customers':>9} {'opened':>7} {'errors':>6} {'429s':>5} "
          f"{'last told s':>11} {'floor s':>7} {'of floor':>8} {'topics':>7} "
          f"{'topic p50 s':>11} {'topic p95 s':>11}")
    p50 = statistics.median(waits) if waits else float("nan")
    p95 = waits[int(0.95 * (len(waits) - 1))] if waits else float("nan")
    print(f"{database:<10} {customers:>9} {len(opened):>7} {errors:>6} {tg.limit_429s:>5} "
          f"{took:>11.1f} {floor:>7.1f} {took / floor:>7.0%} {len(topics):>7} "
          f"{p50:>11.1f} {p95:>11.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"),
                        help="PostgreSQL (postgresql+asyncpg://...); SQLite by default")
    args = parser.parse_args()
    asyncio.run(run(args.customers, args.database_url))


if __name__ == "__main__":
    main()
