"""Faults survived: a helpdesk that fails or hangs, a Bot API that answers 502
or 429 for a while, a database that goes away. Each test prints what was
sent, delivered, lost and duplicated (README, "Fault tests")."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from sqlalchemy import select, text

from bot.app import App
from bot.db.session import create_engine
from bot.sandbox.telegram_server import FakeTelegramServer
from bridges.base import AgentIdentity, Attachment, CustomerIdentity, RemoteMessage
from bridges.errors import Unavailable
from bridges.local import LocalDeskBridge
from bridges.local.models import LocalMessage
from tests.bot.conftest import AGENT_CHAT, ANNA, JANE, eventually, find, make_settings, running
from tests.bot.test_flow import open_ticket
from tests.conftest import TEST_DATABASE_URL


def report(fault: str, sent: list[str], seen: Sequence[str]) -> tuple[int, int]:
    delivered = sum(1 for item in sent if item in seen)
    duplicated = sum(max(0, seen.count(item) - 1) for item in sent)
    lost = len(sent) - delivered
    print(f"\n{fault}: sent={len(sent)} delivered={delivered} lost={lost} "
          f"duplicated={duplicated}")
    return lost, duplicated


class TroubledDesk(LocalDeskBridge):
    """The local desk, made to fail (500) or hang on demand."""

    mode: str = "ok"  # ok | fail | hang

    async def _trouble(self) -> None:
        if self.mode == "fail":
            raise Unavailable("HTTP 500 from the helpdesk", provider=self.name)
        if self.mode == "hang":
            await asyncio.sleep(60)

    async def post_customer_message(self, remote_ticket_id: str, customer: CustomerIdentity,
                                    text: str, attachments: Sequence[Attachment] = (),
                                    idempotency_key: str | None = None) -> RemoteMessage:
        await self._trouble()
        return await super().post_customer_message(remote_ticket_id, customer, text,
                                                   attachments, idempotency_key)

    async def post_agent_reply(self, remote_ticket_id: str, agent: AgentIdentity, text: str,
                               attachments: Sequence[Attachment] = (),
                               idempotency_key: str | None = None) -> RemoteMessage:
        await self._trouble()
        return await super().post_agent_reply(remote_ticket_id, agent, text, attachments,
                                              idempotency_key)


@contextlib.asynccontextmanager
async def troubled(tg: FakeTelegramServer, url: str, redis_url: str | None, **overrides: Any
                   ) -> AsyncIterator[tuple[App, TroubledDesk]]:
    engine = create_engine(url)
    desk = TroubledDesk(engine)
    try:
        settings = make_settings(tg, url, redis_url, provider_timeout_seconds=0.5, **overrides)
        async with running(settings, bridge=desk) as app:
            yield app, desk
    finally:
        await engine.dispose()


async def desk_texts(app: App) -> list[str]:
    async with app.sessionmaker() as session:
        rows = await session.scalars(select(LocalMessage.text).order_by(LocalMessage.id))
        return list(rows)


@pytest.mark.parametrize("mode", ["fail", "hang"])
async def test_helpdesk_down_then_back(tg: FakeTelegramServer, migrated_url: str,
                                       redis_url: str | None, mode: str) -> None:
    async with troubled(tg, migrated_url, redis_url) as (app, desk):
        await open_ticket(tg, JANE, "Helpdesk trouble")
        desk.mode = mode
        sent = [f"while {mode} {i}" for i in range(5)]
        for item in sent:
            tg.user_sends_text(JANE, JANE, item)
        # Agents see them at once: Telegram does not wait for the helpdesk.
        await tg.wait_for(lambda s: all(find(s.sent_to(AGENT_CHAT), t) for t in sent))
        await asyncio.sleep(1.5)
        stored = await desk_texts(app)
        assert not any(t in stored for t in sent)
        desk.mode = "ok"
        texts = await eventually(lambda: desk_texts(app),
                                 lambda found: all(t in found for t in sent), timeout=30)
    ordered = [t for t in texts if t in sent]
    assert ordered == sent  # order within the ticket kept
    assert report(f"helpdesk {mode}", sent, texts) == (0, 0)


async def test_bot_api_502_for_a_while(tg: FakeTelegramServer, app: App) -> None:
    topic, _ = await open_ticket(tg, JANE, "Gateway trouble")
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "Request #1"))
    tg.fail_next("sendMessage", 502, times=4, chat_id=JANE)
    sent = [f"reply {i}" for i in range(3)]
    for item in sent:
        tg.user_sends_text(ANNA, AGENT_CHAT, item, thread_id=topic)
    await tg.wait_for(lambda s: all(find(s.sent_to(JANE), t) for t in sent), timeout=40)
    seen = [t for r in tg.sent_to(JANE) for t in sent if t in (r["text"] or "")]
    assert seen == sent
    assert report("Bot API 502 x4", sent, seen) == (0, 0)


async def test_429_storm(tg: FakeTelegramServer, app: App) -> None:
    topic, _ = await open_ticket(tg, JANE, "Storm")
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "Request #1"))
    tg.fail_next("sendMessage", 429, retry_after=1, times=6)
    sent = [f"storm {i}" for i in range(4)]
    for item in sent:
        tg.user_sends_text(ANNA, AGENT_CHAT, item, thread_id=topic)
        tg.user_sends_text(JANE, JANE, f"customer {item}")
    await tg.wait_for(lambda s: all(find(s.sent_to(JANE), t) for t in sent), timeout=40)
    await tg.wait_for(lambda s: all(find(s.sent_to(AGENT_CHAT), f"customer {t}")
                                    for t in sent), timeout=40)
    seen = [t for r in tg.sent_to(JANE) for t in sent if t in (r["text"] or "")]
    mirrored = [t for r in tg.sent_to(AGENT_CHAT) for t in sent
                if f"customer {t}" in (r["text"] or "")]
    assert report("429 storm (6 in a row), to the customer", sent, seen) == (0, 0)
    assert report("429 storm (6 in a row), to the topic", sent, mirrored) == (0, 0)


@contextlib.asynccontextmanager
async def database_away(url: str, seconds: float) -> AsyncIterator[None]:
    """Make the database refuse everyone for `seconds`, then come back."""
    if url.startswith("postgresql"):
        admin = create_engine(url.rsplit("/", 1)[0] + "/postgres",
                              isolation_level="AUTOCOMMIT")
        database = url.rsplit("/", 1)[1]
        async with admin.connect() as connection:
            await connection.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false'))
            await connection.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": database})
        try:
            yield
            await asyncio.sleep(seconds)
        finally:
            async with admin.connect() as connection:
                await connection.execute(text(
                    f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
            await admin.dispose()
    else:
        # SQLite: another process holds the write lock; writers wait it out.
        # It takes the lock when the bot lets go (waiting here in asyncio: a
        # blocking busy wait would stop the bot, holding the lock, with it).
        path = url.split("///", 1)[1]
        blocker = sqlite3.connect(path, isolation_level=None, timeout=0)
        while True:
            try:
                blocker.execute("BEGIN EXCLUSIVE")
                break
            except sqlite3.OperationalError:
                await asyncio.sleep(0.01)
        try:
            yield
            await asyncio.sleep(seconds)
        finally:
            blocker.execute("COMMIT")
            blocker.close()


async def test_database_briefly_unavailable(tg: FakeTelegramServer, app: App,
                                            migrated_url: str) -> None:
    await open_ticket(tg, JANE, "Database trouble")
    sent = [f"during the outage {i}" for i in range(3)]
    async with database_away(migrated_url, 3.0):
        for item in sent:
            tg.user_sends_text(JANE, JANE, item)
    await tg.wait_for(lambda s: all(find(s.sent_to(AGENT_CHAT), t) for t in sent), timeout=60)
    seen = [t for r in tg.sent_to(AGENT_CHAT) for t in sent if t in (r["text"] or "")]
    kind = "PostgreSQL refusing connections" if TEST_DATABASE_URL else "SQLite locked"
    assert report(f"database away 3 s ({kind})", sent, seen) == (0, 0)
