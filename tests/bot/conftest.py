"""End-to-end harness: the real bot (aiogram's real HTTP session) against the
fake Bot API server on loopback, with the local desk on a real database."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from bot.app import App, build_app
from bot.config import Settings
from bot.sandbox.telegram_server import FakeTelegramServer
from bridges.base import HelpdeskBridge

TOKEN = "123456:TEST-token-for-deskbridge-tests"
AGENT_CHAT = -1001000000001
ANNA, BORIS = 501, 502  # agents
IVAN, JANE = 1001, 1002  # customers
OUTSIDER = 9001  # neither


def populate(server: FakeTelegramServer, *, forum: bool = True) -> None:
    server.add_user(ANNA, "Anna", "anna", "ru")
    server.add_user(BORIS, "Boris", "boris", "en")
    server.add_user(IVAN, "Ivan", "ivan", "ru")
    server.add_user(JANE, "Jane", None, "en")
    server.add_user(OUTSIDER, "Mallory", "mallory", "en")
    server.add_supergroup(AGENT_CHAT, "Support", is_forum=forum, members=[ANNA, BORIS])


@pytest.fixture
def forum() -> bool:
    return True


@pytest.fixture
async def tg(forum: bool) -> AsyncIterator[FakeTelegramServer]:
    async with FakeTelegramServer(token=TOKEN) as server:
        populate(server, forum=forum)
        yield server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_settings(server: FakeTelegramServer, database_url: str, redis_url: str | None,
                  **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "telegram_bot_token": TOKEN,
        "telegram_api_base": server.base_url,
        "agent_chat_id": AGENT_CHAT,
        "database_url": database_url,
        "redis_url": redis_url,
        "provider": "local",
        "poll_interval_seconds": 0.3,
        "agent_language": "en",
        # Fast group pacing keeps flow tests short; the pacing tests set the real 20.
        "telegram_group_per_minute": 120,
        "http_listen": f"127.0.0.1:{free_port()}",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def running(settings: Settings, bridge: HelpdeskBridge | None = None
                  ) -> AsyncIterator[App]:
    """The bot, polling the fake server, until the block ends. Pass `bridge`
    to use one built by the test (e.g. against a fake helpdesk)."""
    app = await build_app(settings, bridge=bridge)
    task = asyncio.create_task(app.run_polling(handle_signals=False))
    try:
        yield app
    finally:
        app.stop_polling()
        try:
            # Generous: on a loaded 2-core CI machine a stop can take a while.
            await asyncio.wait_for(task, 60)
        finally:
            await app.aclose()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def app(tg: FakeTelegramServer, migrated_url: str, redis_url: str | None,
              settings_overrides: dict[str, Any]) -> AsyncIterator[App]:
    async with running(make_settings(tg, migrated_url, redis_url, **settings_overrides)) as app:
        yield app


async def eventually(fetch: Callable[[], Awaitable[Any]],
                     check: Callable[[Any], bool] = bool, timeout: float = 10.0) -> Any:
    """Poll `fetch` until `check` accepts its value (for state outside the
    fake server, e.g. the database); returns that value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await fetch()
        if check(value):
            return value
        assert loop.time() < deadline, f"condition not met: last value {value!r}"
        await asyncio.sleep(0.05)


def texts(records: list[dict[str, Any]]) -> list[str]:
    return [r["text"] or "" for r in records if not r["deleted"]]


def find(records: list[dict[str, Any]], needle: str) -> dict[str, Any] | None:
    return next((r for r in records if needle in (r["text"] or "")), None)


def callback_data_of(record: dict[str, Any], label_part: str) -> str:
    for row in (record.get("reply_markup") or {}).get("inline_keyboard", []):
        for button in row:
            if label_part in button["text"]:
                return str(button["callback_data"])
    raise AssertionError(f"no button {label_part!r} in {record.get('reply_markup')}")


Predicate = Callable[[FakeTelegramServer], Any]
