"""SIGKILL during a burst: nothing lost, nothing duplicated.

The bot runs as a real process (`python -m bot run`) against the fake Bot API
server of this test process; it is killed with SIGKILL in the middle of a
burst of 50 customer messages and started again. Telegram hands the
unconfirmed updates out again; the bot must recognise them by their ids.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.models import TgLink
from bot.db.session import create_engine, create_sessionmaker
from bot.sandbox.telegram_server import FakeTelegramServer
from tests.bot.conftest import AGENT_CHAT, TOKEN

ROOT = Path(__file__).resolve().parents[2]
CUSTOMERS = [2001, 2002, 2003, 2004, 2005]
PER_CUSTOMER = 10
KILL_AFTER = 25  # messages sent before the kill; the other 25 come while the bot is down
MARK = re.compile(r"\[c\d+-m\d+\]")


def start_bot(server: FakeTelegramServer, database_url: str, redis_url: str | None,
              workdir: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE": server.base_url,
        "AGENT_CHAT_ID": str(AGENT_CHAT),
        "DATABASE_URL": database_url,
        "PROVIDER": "local",
        "POLL_INTERVAL_SECONDS": "1",
        "AGENT_LANGUAGE": "en",
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    with log.open("ab") as output:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=workdir, env=env,
                                stdout=output, stderr=subprocess.STDOUT)


async def until_handled(engine: AsyncEngine, count: int, bot: subprocess.Popen[bytes],
                        log: Path) -> None:
    """Wait until the bot has stored `count` customer messages (so the kill
    lands while it is working, not before it started)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while await inbound_count(engine) < count:
        assert bot.poll() is None, f"the bot died: see {log}"
        assert loop.time() < deadline, f"the bot handled nothing: see {log}"
        await asyncio.sleep(0.01)


async def inbound_count(engine: AsyncEngine) -> int:
    async with create_sessionmaker(engine)() as session:
        return await session.scalar(
            select(func.count()).select_from(TgLink).where(TgLink.direction == "in")) or 0


def delivered_marks(server: FakeTelegramServer) -> Counter[str]:
    counts: Counter[str] = Counter()
    for record in server.sent_to(AGENT_CHAT):
        if not record["deleted"]:
            counts.update(set(MARK.findall(record["text"] or "")))  # once per message
    return counts


async def test_sigkill_during_burst_loses_and_duplicates_nothing(
    tg: FakeTelegramServer, migrated_url: str, redis_url: str | None, tmp_path: Path
) -> None:
    for customer in CUSTOMERS:
        tg.add_user(customer, f"Customer {customer}", None, "en")
    sent_marks = [f"[c{number}-m{index:02d}]" for index in range(PER_CUSTOMER)
                  for number in range(1, len(CUSTOMERS) + 1)]

    log = tmp_path / "bot.log"
    first = start_bot(tg, migrated_url, redis_url, tmp_path, log)

    async def burst() -> None:
        """Customers write while the bot runs; halfway through it is killed,
        and the rest arrive while it is down (Telegram keeps them)."""
        for index, mark in enumerate(sent_marks):
            if index == KILL_AFTER:
                await until_handled(engine, 10, first, log)
                first.send_signal(signal.SIGKILL)
                first.wait()
            customer = CUSTOMERS[int(mark[2:mark.index("-")]) - 1]
            tg.user_sends_text(customer, customer, f"message {mark}")
            await asyncio.sleep(0.02)

    engine = create_engine(migrated_url)
    try:
        try:
            await tg.wait_for(lambda s: s.calls("getUpdates"), timeout=30)
            await burst()
        finally:
            if first.poll() is None:
                first.send_signal(signal.SIGKILL)
                first.wait()
        handled_before_kill = await inbound_count(engine)
        assert handled_before_kill <= KILL_AFTER

        second = start_bot(tg, migrated_url, redis_url, tmp_path, log)
        try:
            await tg.wait_for(lambda s: len(delivered_marks(s)) == len(sent_marks), timeout=150)
            await tg.wait_updates_confirmed(timeout=30)
            await asyncio.sleep(1.5)  # anything sent twice would show up by now
        finally:
            second.send_signal(signal.SIGTERM)
            try:
                second.wait(timeout=20)
            except subprocess.TimeoutExpired:
                second.kill()
                second.wait()
        inbound = await inbound_count(engine)
    finally:
        await engine.dispose()

    counts = delivered_marks(tg)
    delivered = sum(1 for mark in sent_marks if counts[mark] >= 1)
    duplicated = sum(counts[mark] - 1 for mark in sent_marks if counts[mark] > 1)
    lost = len(sent_marks) - delivered
    print(f"\nSIGKILL burst: sent={len(sent_marks)} handled before kill={handled_before_kill} "
          f"delivered={delivered} lost={lost} duplicated={duplicated} "
          f"(agent-chat messages: {len(tg.sent_to(AGENT_CHAT))})")
    assert lost == 0
    assert duplicated == 0, "\n".join(
        f"{r['method']} thread={r['thread_id']} id={r['message_id']}: {r['text']!r}"
        for r in tg.sent_to(AGENT_CHAT)
        if any(counts[m] > 1 for m in MARK.findall(r["text"] or "")))
    assert inbound == len(sent_marks)
    log_text = log.read_text()
    assert "Traceback" not in log_text, log_text[-3000:]
    assert TOKEN not in log_text  # secrets are never logged
