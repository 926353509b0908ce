"""Webhook mode: the secret token is checked before anything is processed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from sqlalchemy import func, select

from bot.app import App, build_app
from bot.db.models import Ticket
from bot.sandbox.telegram_server import FakeTelegramServer
from tests.bot.conftest import AGENT_CHAT, JANE, find, free_port, make_settings

SECRET = "hook-secret-Zx81"


@contextlib.asynccontextmanager
async def webhook_app(tg: FakeTelegramServer, url: str, redis_url: str | None,
                      **overrides: Any) -> AsyncIterator[tuple[App, str]]:
    port = free_port()
    hook = f"http://127.0.0.1:{port}/telegram/hook"
    settings = make_settings(tg, url, redis_url, webhook_url=hook, webhook_secret=SECRET,
                             webhook_listen=f"127.0.0.1:{port}", **overrides)
    app = await build_app(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(app.run_webhook(stop))
    try:
        await tg.wait_for(lambda s: s.calls("setWebhook"))
        yield app, hook
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await app.aclose()


async def tickets(app: App) -> int:
    async with app.sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(Ticket)) or 0


async def test_wrong_or_missing_secret_is_refused(tg: FakeTelegramServer, migrated_url: str,
                                                  redis_url: str | None) -> None:
    async with webhook_app(tg, migrated_url, redis_url) as (app, hook):
        registered = tg.calls("setWebhook")[0]
        assert registered["url"] == hook and registered["secret_token"] == SECRET
        message = tg.user_sends_text(JANE, JANE, "Via webhook")
        update = {"update_id": 7001, "message": message}
        async with httpx.AsyncClient() as client:
            missing = await client.post(hook, json=update)
            wrong = await client.post(hook, json=update,
                                      headers={"X-Telegram-Bot-Api-Secret-Token": "guess"})
            assert (missing.status_code, wrong.status_code) == (401, 401)
            assert await tickets(app) == 0
            good = await client.post(hook, json=update,
                                     headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
            assert good.status_code == 200
            # Telegram delivering the same update again changes nothing.
            again = await client.post(hook, json=update,
                                      headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
            assert again.status_code == 200
        assert await tickets(app) == 1  # handled before the 200, not in the background
        await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "Via webhook"))
        assert len([r for r in tg.sent_to(AGENT_CHAT) if "Via webhook" in (r["text"] or "")]) == 1
