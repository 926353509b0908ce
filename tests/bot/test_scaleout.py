"""Three bot processes behind one webhook URL, one database, one fake Bot API
server: every message is delivered exactly once, also when a process is
killed mid-burst (the test plays Telegram: an update whose POST got no 200
is posted again, to another process). The poller's leader lock moves to a
surviving process. PostgreSQL only: SQLite deployments run one process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from bot.db.models import TgLink
from bot.db.session import create_engine, create_sessionmaker
from bot.sandbox.telegram_server import FakeTelegramServer
from tests.bot.conftest import AGENT_CHAT, TOKEN, free_port
from tests.bot.test_crash import MARK
from tests.conftest import TEST_DATABASE_URL

pytestmark = pytest.mark.skipif(not TEST_DATABASE_URL, reason="needs PostgreSQL")

ROOT = Path(__file__).resolve().parents[2]
SECRET = "scale-out-secret-91"
CUSTOMERS = [3001, 3002, 3003, 3004, 3005]
PER_CUSTOMER = 10


def start(server: FakeTelegramServer, url: str, redis_url: str | None, port: int,
          log: Path, *, real_limits: bool = False) -> subprocess.Popen[bytes]:
    env = {
        "PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT),
        "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE": server.base_url,
        "AGENT_CHAT_ID": str(AGENT_CHAT), "DATABASE_URL": url, "PROVIDER": "local",
        "POLL_INTERVAL_SECONDS": "0.5", "AGENT_LANGUAGE": "en",
        "WEBHOOK_URL": f"http://127.0.0.1:{port}/hook", "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_LISTEN": f"127.0.0.1:{port}", "HTTP_LISTEN": f"127.0.0.1:{free_port()}",
        "OUTBOX_LEASE_SECONDS": "3", "TELEGRAM_GROUP_PER_MINUTE": "600",
    }
    if real_limits:
        del env["TELEGRAM_GROUP_PER_MINUTE"]
    if redis_url:
        env["REDIS_URL"] = redis_url
    with log.open("ab") as output:
        return subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=log.parent, env=env,
                                stdout=output, stderr=subprocess.STDOUT)


async def wait_up(port: int) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(1200):  # a minute: importing aiogram alone takes seconds on 2 cores
            try:
                await client.post(f"http://127.0.0.1:{port}/hook", json={})
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise AssertionError(f"process on {port} did not start")


def leader_of(logs: list[Path]) -> int | None:
    found = [i for i, log in enumerate(logs) if "now leads" in log.read_text()]
    return found[-1] if found else None


async def test_three_processes_exactly_once_with_one_killed(
    tg: FakeTelegramServer, migrated_url: str, redis_url: str | None, tmp_path: Path
) -> None:
    for customer in CUSTOMERS:
        tg.add_user(customer, f"Customer {customer}", None, "en")
    ports = [free_port() for _ in range(3)]
    logs = [tmp_path / f"bot{i}.log" for i in range(3)]
    processes = [start(tg, migrated_url, redis_url, port, log) for port, log in zip(ports, logs,
                                                                                   strict=True)]
    alive = [True, True, True]
    try:
        for port in ports:
            await wait_up(port)
        await asyncio.sleep(1.5)  # the poll job runs at start: one process takes the lead
        leader = leader_of(logs)
        assert leader is not None
        victim = leader  # kill the leader, to see the lead move too

        marks = [f"[c{n}-m{i:02d}]" for i in range(PER_CUSTOMER)
                 for n in range(1, len(CUSTOMERS) + 1)]
        posted_twice = 0
        async with httpx.AsyncClient(timeout=30) as client:
            for index, mark in enumerate(marks):
                customer = CUSTOMERS[int(mark[2:mark.index("-")]) - 1]
                message = tg.user_sends_text(customer, customer, f"message {mark}")
                update = {"update_id": 10_000 + index, "message": message}
                if index == 20:
                    processes[victim].send_signal(signal.SIGKILL)
                    processes[victim].wait()
                    alive[victim] = False
                target = index % 3
                while True:  # Telegram retries until some process answers 200
                    if not alive[target]:
                        target = (target + 1) % 3
                        continue
                    try:
                        response = await client.post(
                            f"http://127.0.0.1:{ports[target]}/hook", json=update,
                            headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
                        if response.status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    posted_twice += 1
                    target = (target + 1) % 3

        def delivered(server: FakeTelegramServer) -> Counter[str]:
            counts: Counter[str] = Counter()
            for record in server.sent_to(AGENT_CHAT):
                counts.update(set(MARK.findall(record["text"] or "")))
            return counts

        await tg.wait_for(lambda s: len(delivered(s)) == len(marks), timeout=60)
        await asyncio.sleep(4)  # past a lease: a double claim would show by now
        counts = delivered(tg)
        duplicated = sum(c - 1 for c in counts.values() if c > 1)
        lost = len(marks) - len(counts)
        survivors = [log for i, log in enumerate(logs) if alive[i]]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while leader_of(survivors) is None and loop.time() < deadline:  # noqa: ASYNC110 - a file
            await asyncio.sleep(0.2)
        new_leader = leader_of(survivors)
        print(f"\nscale-out (3 processes, leader killed after 20 of {len(marks)}): "
              f"sent={len(marks)} delivered={len(counts)} lost={lost} "
              f"duplicated={duplicated} reposted={posted_twice}")
        assert (lost, duplicated) == (0, 0)
        assert new_leader is not None, "no surviving process took the poller's lead"
        engine = create_engine(migrated_url)
        try:
            async with create_sessionmaker(engine)() as session:
                inbound = await session.scalar(select(func.count()).select_from(TgLink).where(
                    TgLink.direction == "in"))
        finally:
            await engine.dispose()
        assert inbound == len(marks)
    finally:
        for process, is_alive in zip(processes, alive, strict=True):
            if is_alive:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    for log in logs:
        assert TOKEN not in log.read_text()


NOTIFIED = 150


@pytest.mark.skipif(not os.environ.get("TEST_REDIS_URL"), reason="needs Redis")
async def test_three_processes_share_telegrams_limits_through_redis(
    tg: FakeTelegramServer, migrated_url: str, redis_url: str | None, tmp_path: Path
) -> None:
    """A burst of helpdesk replies to 150 customers, delivered by three
    processes at once while the agent group is busy with their topics: with
    the budgets in Redis the three together stay under Telegram's limits."""
    from bench.notify import ANSWER, answer_all, seed
    from bridges.registry import BridgeDeps, create_bridge

    customers = range(40_000, 40_000 + NOTIFIED)
    for user_id in customers:
        tg.add_user(user_id, f"Customer {user_id}", None, "en")
    engine = create_engine(migrated_url)
    bridge = await create_bridge("local", BridgeDeps(engine=engine))
    ports = [free_port() for _ in range(3)]
    logs = [tmp_path / f"bot{i}.log" for i in range(3)]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        remote_ids = await seed(engine, bridge, customers)
        processes = [start(tg, migrated_url, redis_url, port, log, real_limits=True)
                     for port, log in zip(ports, logs, strict=True)]
        for port in ports:
            await wait_up(port)
        tg.enforce_limits = True
        await answer_all(engine, remote_ids)

        def answered(server: FakeTelegramServer) -> Counter[int]:
            return Counter(r["chat_id"] for r in server.sent
                           if r["chat_id"] > 0 and ANSWER in (r["text"] or ""))

        await tg.wait_for(lambda s: len(answered(s)) == NOTIFIED or None, timeout=90)
        await asyncio.sleep(3)  # past a lease: a double delivery would show by now
        counts = answered(tg)
        print(f"\nshared limits (3 processes): customers={NOTIFIED} answered={len(counts)} "
              f"duplicated={sum(c - 1 for c in counts.values())} 429s={tg.limit_429s} "
              f"group calls={len(tg.sent_to(AGENT_CHAT))}")
        assert set(counts) == set(customers)
        assert all(c == 1 for c in counts.values())
        assert tg.limit_429s == 0
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        await bridge.aclose()
        await engine.dispose()
