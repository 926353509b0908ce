"""Resident memory of the bot with a big database and a busy hour.

The database holds 100,000 tickets (the bot's tables and the local desk's,
consistent with each other, each with its opening message, its desk events
and its Telegram link) of 25,000 customers. The bot then runs as a real
process (`python -m bot run`, local desk, long polling) against the fake Bot
API server of this process, and 1,000 active customers (half of them with a
ticket from the seeded history, half new) write 3 messages each; then the
helpdesk answers every one of their tickets, so the poller imports 1,000
replies and the outbox delivers them.

The bot's VmRSS (resident now) and VmHWM (the peak so far) are read from
/proc/<pid>/status when it idles after start, after the burst, and at the
end. Target: at most 150 MB; "met" means the peak so far is within it. It
prints a table; it is not a test.

    python -m bench.memory [--tickets N] [--customers N] [--database-url URL]

Without --database-url the database is a temporary SQLite file. With a
PostgreSQL URL (postgresql+asyncpg://postgres@127.0.0.1:5432/test) the bench
creates a database of its own beside the one named (bench_memory_<pid>) and
drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench._seed import Seeded, seed
from bench.common import (
    AGENT_CHAT,
    TOKEN,
    bot_env,
    machine,
    scratch_database,
    start_process,
    stop_process,
)
from bot.db.models import Customer, OutboxItem, PollCursor, TgLink, Ticket
from bot.db.session import create_engine
from bot.sandbox.telegram_server import FakeTelegramServer
from bridges.base import AgentIdentity
from bridges.local.bridge import LocalDeskBridge
from tests.bot.conftest import free_port

AGENT = 1
TARGET_MB = 150.0
MESSAGES_PER_CUSTOMER = 3
FIRST_NEW_USER = 50_000_000  # active customers with no history
REPLY = "Your answer is here"
IDLE_SETTLE_SECONDS = 5.0  # after start, so the first poll and the SLA job have run
WORK_TIMEOUT = 900.0


@dataclass(frozen=True, slots=True)
class Sample:
    phase: str
    tickets: int
    active: int
    rss_mb: float
    peak_mb: float
    seconds: float  # how long the phase took


class BotDied(RuntimeError):
    pass


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, in MB (MiB)."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024  # reported in kB
    return values["VmRSS"], values["VmHWM"]


def start_bot(server: FakeTelegramServer, database_url: str, log: Path
              ) -> subprocess.Popen[bytes]:
    return start_process("bot", bot_env(
        server.base_url, database_url,
        HTTP_LISTEN=f"127.0.0.1:{free_port()}",  # the health server is part of the bot
        # The fake server enforces no limits: pacing must not stretch the run.
        TELEGRAM_GROUP_PER_MINUTE="6000", TELEGRAM_GLOBAL_RATE="1000",
        TELEGRAM_CHAT_INTERVAL="0.05"), log, "run")


def tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:]


async def until(check: Callable[[], Awaitable[bool]], bot: subprocess.Popen[bytes], log: Path,
                what: str, timeout: float = WORK_TIMEOUT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if bot.poll() is not None:
            raise BotDied(f"the bot exited ({bot.returncode}) waiting for {what}; its log:\n"
                          + tail(log))
        if loop.time() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s; the bot's log:\n"
                               + tail(log))
        await asyncio.sleep(0.5)


async def scalar(engine: AsyncEngine, statement: object) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(statement) or 0)  # type: ignore[call-overload]


async def outbox_idle(engine: AsyncEngine) -> bool:
    live = select(func.count()).select_from(OutboxItem).where(
        OutboxItem.status.in_(("pending", "in_flight")))
    return await scalar(engine, live) == 0


def active_customers(seeded: Seeded, count: int) -> list[int]:
    """Telegram ids: half from the seeded history (spread over it), half new."""
    old = min(count // 2, seeded.customers)
    stride = max(1, seeded.customers // max(old, 1))
    returning = [seeded.tg_user_id(1 + i * stride) for i in range(old)]
    return returning + [FIRST_NEW_USER + i for i in range(count - old)]


async def run(database_url: str | None, tickets: int, customers: int, workdir: Path) -> None:
    started = time.perf_counter()
    samples: list[Sample] = []
    async with scratch_database(database_url, "memory") as url:
        engine = create_engine(url)
        try:
            phase = time.perf_counter()
            seeded = await seed(engine, tickets)
            seeding = time.perf_counter() - phase
            print(f"seeded {seeded.tickets} tickets of {seeded.customers} customers "
                  f"({seeded.open_tickets} open) in {seeding:.1f} s", flush=True)
            async with FakeTelegramServer(token=TOKEN) as tg:
                samples = await exercise(tg, engine, url, seeded, customers, workdir)
        finally:
            await engine.dispose()
    report(samples, url_kind="PostgreSQL" if url.startswith("postgresql") else "SQLite",
           total=time.perf_counter() - started)


async def exercise(tg: FakeTelegramServer, engine: AsyncEngine, url: str, seeded: Seeded,
                   customers: int, workdir: Path) -> list[Sample]:
    tg.add_supergroup(AGENT_CHAT, "Support", is_forum=True, members=[AGENT])
    tg.add_user(AGENT, "Agent", "agent", "en")
    active = active_customers(seeded, customers)
    for user_id in active:
        tg.add_user(user_id, f"Customer {user_id}", None, "en")
    samples: list[Sample] = []
    log = workdir / "bot.log"
    bot = start_bot(tg, url, log)

    async def sample(phase: str, since: float) -> None:
        rss, peak = memory_mb(bot.pid)
        count = await scalar(engine, select(func.count()).select_from(Ticket))
        samples.append(Sample(phase, count, len(active), rss, peak,
                              time.perf_counter() - since))
        print(f"  {phase}: RSS {rss:.1f} MB, peak {peak:.1f} MB", flush=True)

    try:
        # Idle: polling Telegram, the first poll of the desk done, nothing to do.
        phase = time.perf_counter()

        async def polling() -> bool:
            cursor = select(func.count()).select_from(PollCursor)
            return bool(tg.calls("getUpdates")) and await scalar(engine, cursor) > 0

        await until(polling, bot, log, "the bot to start")
        await asyncio.sleep(IDLE_SETTLE_SECONDS)
        await sample("idle after start", phase)

        # The burst: every active customer writes, all at once.
        phase = time.perf_counter()
        for number in range(1, MESSAGES_PER_CUSTOMER + 1):
            for user_id in active:
                tg.user_sends_text(user_id, user_id, f"Message {number} of customer {user_id}")
        inbound = select(func.count()).select_from(TgLink).where(TgLink.direction == "in")
        expected = seeded.tickets + len(active) * MESSAGES_PER_CUSTOMER

        async def handled() -> bool:
            return await scalar(engine, inbound) >= expected and await outbox_idle(engine)

        await until(handled, bot, log, "the burst to be handled and delivered")
        await sample("after the burst", phase)

        # The helpdesk answers every active customer's ticket.
        phase = time.perf_counter()
        remote_ids = await open_tickets_of(engine, active)
        desk = LocalDeskBridge(engine)
        agent = AgentIdentity("desk", "Helpdesk agent")
        for remote_id in remote_ids:
            await desk.post_agent_reply(remote_id, agent, REPLY)
        answered: set[int] = set()
        scanned = 0

        async def delivered() -> bool:
            nonlocal scanned
            for record in tg.sent[scanned:]:
                if record["chat_id"] > 0 and REPLY in (record["text"] or ""):
                    answered.add(record["chat_id"])
            scanned = len(tg.sent)
            return len(answered) >= len(active) and await outbox_idle(engine)

        await until(delivered, bot, log, "the replies to be delivered")
        await asyncio.sleep(2)  # let the last poll and the outbox settle
        await sample("end (replies delivered)", phase)
    finally:
        stop_process(bot)
    dead = await scalar(engine, select(func.count()).select_from(OutboxItem)
                        .where(OutboxItem.status == "dead"))
    print(f"  {len(tg.sent)} messages sent by the bot, {dead} dead letters", flush=True)
    return samples


async def open_tickets_of(engine: AsyncEngine, tg_user_ids: list[int]) -> list[str]:
    """The desk ids of the active customers' open tickets (one each)."""
    async with engine.connect() as connection:
        rows = await connection.scalars(
            select(Ticket.remote_ticket_id).join(Customer, Customer.id == Ticket.customer_id)
            .where(Customer.tg_user_id.in_(tg_user_ids), Ticket.status != "closed",
                   Ticket.remote_ticket_id.is_not(None))
            .order_by(Ticket.id))
        return [str(remote_id) for remote_id in rows]


def report(samples: list[Sample], *, url_kind: str, total: float) -> None:
    print(f"\n# {machine()}")
    print(f"bot memory, {url_kind} ({total:.0f} s in all)")
    print(f"{'phase':<24} {'tickets':>8} {'active':>7} {'RSS MB':>7} {'peak MB':>8} "
          f"{'target MB':>10} {'met':>4} {'seconds':>8}")
    for s in samples:
        met = "yes" if s.peak_mb <= TARGET_MB else "NO"
        print(f"{s.phase:<24} {s.tickets:>8} {s.active:>7} {s.rss_mb:>7.1f} {s.peak_mb:>8.1f} "
              f"{TARGET_MB:>10.0f} {met:>4} {s.seconds:>8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"),
                        help="PostgreSQL (postgresql+asyncpg://...); SQLite by default")
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=1_000, help="active customers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as folder:
        asyncio.run(run(args.database_url, args.tickets, args.customers, Path(folder)))


if __name__ == "__main__":
    main()
