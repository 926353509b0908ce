"""Customers → helpdesk relay: how many customer messages a second the bot
turns into helpdesk calls, and how long each waits, beside a bare aiogram
echo bot on the same fake Bot API server (the framework's ceiling).

Every bot runs as a real process (`python -m bot run`, or `bench.echo_bot`)
against the fake Bot API server and the fake Omnidesk of this process. Each
customer message carries a mark; the time it was offered to the bot is taken
here, the time it reached the helpdesk at the helpdesk (the fake Omnidesk's
request, the local desk's row), or, for the echo bot, at its sendMessage.

Three phases per row:
  open   every customer writes once (the bot opens a ticket for each);
  burst  every customer writes M more messages at once: the throughput;
  paced  messages offered at a steady rate: the latency a customer feels.

Throughput is messages / (last arrival − first offer). Latency is arrival −
offer, p50 and p99. One process reads updates by long polling; two processes
share a webhook URL (this process plays Telegram and posts each update to
one of them; a customer's messages are posted in order).

    python -m bench.relay [--customers N] [--messages M] [--rate R]
                          [--database-url postgresql+asyncpg://...] [--only echo,local,...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import select

from bench.common import (
    AGENT_CHAT,
    TOKEN,
    bot_env,
    machine,
    scratch_database,
    start_process,
    stop_process,
)
from bot.db.session import create_engine
from bot.sandbox.omnidesk import FakeOmnidesk
from bot.sandbox.telegram_server import FakeTelegramServer
from bridges.local.models import LocalMessage
from tests.bot.conftest import free_port

MARK = re.compile(r"\[r(\d+)\]")
CHANNEL = "cch9"
SECRET = "bench-webhook-secret"
FIRST_CUSTOMER = 200_000


@dataclass
class Clock:
    """Offer and arrival times of each marked message (time.time(), seconds)."""

    offered: dict[int, float] = field(default_factory=dict)
    arrived: dict[int, float] = field(default_factory=dict)

    def arrive(self, text: str, at: float | None = None) -> None:
        at = time.time() if at is None else at
        for mark in MARK.findall(text):
            self.arrived.setdefault(int(mark), at)

    def summary(self, marks: list[int]) -> tuple[float, float, float]:
        """(messages per second, p50 ms, p99 ms) over `marks`."""
        begin = min(self.offered[m] for m in marks)
        end = max(self.arrived[m] for m in marks)
        waits = sorted((self.arrived[m] - self.offered[m]) * 1000 for m in marks)
        p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))]
        return len(marks) / max(end - begin, 1e-9), statistics.median(waits), p99


class StampedSent(list[dict[str, Any]]):
    """The fake server's record of sent messages, stamping marks as they come."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    def append(self, record: dict[str, Any]) -> None:
        if record.get("chat_id", 0) > 0:
            self.clock.arrive(record.get("text") or "")
        super().append(record)


def stamp_omnidesk(desk: FakeOmnidesk, clock: Clock) -> None:
    """Stamp marks as the fake Omnidesk receives a case or a message (before start())."""
    def stamped(handler: Callable[[web.Request], Awaitable[Any]]
                ) -> Callable[[web.Request], Awaitable[Any]]:
        async def handle(request: web.Request) -> Any:
            arrived = time.time()
            clock.arrive(await request.text(), arrived)
            return await handler(request)
        return handle

    desk._create_case = stamped(desk._create_case)  # type: ignore[method-assign,assignment]
    desk._add_message = stamped(desk._add_message)  # type: ignore[method-assign,assignment]


@dataclass
class Row:
    bot: str
    database: str
    processes: int
    figures: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    cpu_ms: float = 0.0  # the bot's CPU time per message in the burst


class Relay:
    """One row of the table: a bot (echo, local or omnidesk) on one database."""

    def __init__(self, bot: str, database_url: str | None, processes: int, customers: int,
                 messages: int, rate: float, workdir: Path) -> None:
        self.bot, self.database_url, self.processes = bot, database_url, processes
        self.customers = list(range(FIRST_CUSTOMER, FIRST_CUSTOMER + customers))
        self.messages, self.rate, self.workdir = messages, rate, workdir
        self.clock = Clock()
        self.marks = itertools.count(1)
        self.ports = [free_port() for _ in range(processes)]
        self.updates = itertools.count(1)
        self.next_port = itertools.cycle(range(processes))

    async def run(self) -> Row:
        database = "-" if self.bot == "echo" else (
            "PostgreSQL" if (self.database_url or "").startswith("postgresql") else "SQLite")
        row = Row(self.bot, database, self.processes)
        async with contextlib.AsyncExitStack() as stack:
            tg = await stack.enter_async_context(FakeTelegramServer(token=TOKEN))
            tg.add_supergroup(AGENT_CHAT, "Support", is_forum=True, members=[1])
            for user_id in self.customers:
                tg.add_user(user_id, f"Customer {user_id}", f"customer{user_id}", "en")
            if self.bot == "echo":
                tg.sent = StampedSent(self.clock)
            env = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE": tg.base_url}
            url = ""
            if self.bot != "echo":
                url = await stack.enter_async_context(
                    scratch_database(self.database_url, f"relay_{self.bot}"))
                env = bot_env(tg.base_url, url, provider=self.bot, POLL_INTERVAL_SECONDS="5")
            if self.bot == "omnidesk":
                desk = FakeOmnidesk(calls_per_hour=None)
                desk.add_channel(CHANNEL)
                stamp_omnidesk(desk, self.clock)
                await stack.enter_async_context(desk)
                env.update(desk.env(channel=CHANNEL))
            processes = [self.start(env, i) for i in range(self.processes)]
            try:
                session = await stack.enter_async_context(aiohttp.ClientSession())
                await self.wait_ready(tg, session)
                send = self.sender(tg, session)
                arrivals = self.arrivals(url, stack)
                opened = [await send(user) for user in self.customers]
                await self.until_arrived(opened, arrivals)
                row.figures["open"] = self.clock.summary(opened)

                cpu_before = sum(cpu_seconds(p.pid) for p in processes)
                burst = await self.burst(send)
                await self.until_arrived(burst, arrivals)
                row.figures["burst"] = self.clock.summary(burst)
                row.cpu_ms = (sum(cpu_seconds(p.pid) for p in processes) - cpu_before
                              ) * 1000 / len(burst)

                paced = await self.paced(send)
                await self.until_arrived(paced, arrivals)
                row.figures["paced"] = self.clock.summary(paced)
            finally:
                for process in processes:
                    stop_process(process)
        return row

    def start(self, env: dict[str, str], index: int) -> subprocess.Popen[bytes]:
        log = self.workdir / f"{self.bot}-{index}.log"
        if self.bot == "echo":
            return start_process("bench.echo_bot", env, log)
        own = dict(env)
        if self.processes > 1:
            port = self.ports[index]
            own.update(WEBHOOK_URL=f"http://127.0.0.1:{port}/hook", WEBHOOK_SECRET=SECRET,
                       WEBHOOK_LISTEN=f"127.0.0.1:{port}")
        return start_process("bot", own, log, "run")

    async def wait_ready(self, tg: FakeTelegramServer, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.processes == 1:
                if any(method == "getUpdates" for method, _ in tg.requests):
                    return
            else:
                up = 0
                for port in self.ports:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.post(f"http://127.0.0.1:{port}/hook", json={}):
                            up += 1
                if up == len(self.ports):
                    return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.bot} did not start; see {self.workdir}")

    def sender(self, tg: FakeTelegramServer, session: aiohttp.ClientSession
               ) -> Callable[[int], Coroutine[Any, Any, int]]:
        """A function that has a customer write one marked message; it returns the mark."""
        async def send(user_id: int) -> int:
            mark = next(self.marks)
            text = f"Message from {user_id} [r{mark}]"
            self.clock.offered[mark] = time.time()
            message = tg.user_sends_text(user_id, user_id, text)
            if self.processes > 1:  # play Telegram: post until a process answers 200
                update = {"update_id": next(self.updates), "message": message}
                while True:
                    port = self.ports[next(self.next_port)]
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.post(
                                f"http://127.0.0.1:{port}/hook", json=update,
                                headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}) as answer:
                            if answer.status == 200:
                                break
                    await asyncio.sleep(0.05)
            return mark
        return send

    async def burst(self, send: Callable[[int], Awaitable[int]]) -> list[int]:
        """M messages from every customer at once (each customer's in order)."""
        async def one_customer(user_id: int) -> list[int]:
            return [await send(user_id) for _ in range(self.messages)]
        if self.processes == 1:  # queued at the server in one go, interleaved
            return [await send(user) for _ in range(self.messages) for user in self.customers]
        per_customer = await asyncio.gather(*(one_customer(u) for u in self.customers))
        return [mark for marks in per_customer for mark in marks]

    async def paced(self, send: Callable[[int], Coroutine[Any, Any, int]]) -> list[int]:
        """`rate` messages a second for 10 seconds, customers taking turns."""
        count = int(self.rate * 10)
        start = time.monotonic()
        tasks: list[asyncio.Task[int]] = []
        for index, user in zip(range(count), itertools.cycle(self.customers), strict=False):
            await asyncio.sleep(max(0.0, start + index / self.rate - time.monotonic()))
            tasks.append(asyncio.create_task(send(user)))
        return list(await asyncio.gather(*tasks))

    def arrivals(self, url: str, stack: contextlib.AsyncExitStack
                 ) -> Callable[[], Awaitable[None]]:
        """A function that brings `clock.arrived` up to date (the local desk is read
        from its tables; the other bots are stamped as they call)."""
        if self.bot != "local":
            async def nothing() -> None:
                return None
            return nothing
        engine = create_engine(url)
        stack.push_async_callback(engine.dispose)
        seen: set[int] = set()  # not an id cursor: PostgreSQL commits ids out of order

        async def read() -> None:
            async with engine.connect() as connection:
                rows = await connection.execute(
                    select(LocalMessage.id, LocalMessage.text, LocalMessage.created_at)
                    .where(LocalMessage.author_kind == "customer"))
                for message_id, body, created in rows:
                    if message_id not in seen:
                        seen.add(message_id)
                        self.clock.arrive(body, as_timestamp(created))
        return read

    async def until_arrived(self, marks: list[int], refresh: Callable[[], Awaitable[None]]
                            ) -> None:
        deadline = time.monotonic() + 600
        while True:
            await refresh()
            missing = [m for m in marks if m not in self.clock.arrived]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.bot}: {len(missing)} messages never arrived; "
                                   f"see {self.workdir}")
            await asyncio.sleep(0.5)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def as_timestamp(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def print_table(rows: Iterable[Row], customers: int, messages: int, rate: float) -> None:
    rows = list(rows)
    print(f"# {machine()}")
    print(f"# {customers} customers; burst of {customers * messages} messages; "
          f"paced at {rate:g}/s for 10 s")
    print(f"{'bot':<9} {'database':<10} {'procs':>5} | {'open/s':>7} | {'burst/s':>7} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'CPU ms':>6} | {'paced p50':>9} {'p99 ms':>7} | "
          f"{'of echo':>7}")
    echo = next((r.figures["burst"][0] for r in rows if r.bot == "echo"), None)
    for row in rows:
        opened, burst, paced = row.figures["open"], row.figures["burst"], row.figures["paced"]
        share = f"{burst[0] / echo:>6.0%}" if echo else "-"
        print(f"{row.bot:<9} {row.database:<10} {row.processes:>5} | {opened[0]:>7.0f} | "
              f"{burst[0]:>7.0f} {burst[1]:>7.0f} {burst[2]:>7.0f} {row.cpu_ms:>6.1f} | "
              f"{paced[1]:>9.0f} {paced[2]:>7.0f} | {share:>7}")


async def run(args: argparse.Namespace) -> None:
    plan: list[tuple[str, str | None, int]] = [("echo", None, 1), ("local", None, 1),
                                               ("omnidesk", None, 1)]
    if args.database_url:
        plan += [("local", args.database_url, 1), ("local", args.database_url, 2),
                 ("omnidesk", args.database_url, 2)]
    if args.only:
        wanted = set(args.only.split(","))
        plan = [p for p in plan if p[0] in wanted or f"{p[0]}:{p[2]}" in wanted]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as folder:
        for bot, url, processes in plan:
            workdir = Path(folder) / f"{bot}-{processes}-{len(rows)}"
            workdir.mkdir()
            relay = Relay(bot, url, processes, args.customers, args.messages, args.rate, workdir)
            try:
                rows.append(await relay.run())
            except Exception:
                for log in sorted(workdir.glob("*.log")):
                    print(f"--- {log.name}\n{log.read_text()[-3000:]}")
                raise
    print_table(rows, args.customers, args.messages, args.rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--messages", type=int, default=10, help="per customer in the burst")
    parser.add_argument("--rate", type=float, default=20.0, help="messages/s in the paced phase")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"),
                        help="PostgreSQL (postgresql+asyncpg://...) for the PostgreSQL rows")
    parser.add_argument("--only", help="comma-separated bots (echo, local, omnidesk, local:2)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
