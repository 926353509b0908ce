"""The demo's sandbox: its world, its page over real HTTP, and the real bot."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from bot.app import App
from bot.config import Settings
from bot.sandbox import world
from bot.sandbox.desks import DemoDesk
from bot.sandbox.page import SandboxPage
from bot.sandbox.telegram_server import FakeTelegramServer
from tests.bot.conftest import running

JANE, IVAN, LENA = (person.id for person in world.CUSTOMERS)
ANNA, BORIS = (person.id for person in world.AGENTS)
GROUP = world.AGENT_CHAT


def demo_settings(server: FakeTelegramServer, database_url: str, redis_url: str | None,
                  **overrides: Any) -> Settings:
    """What `deskbridge demo` gives its bot, with the tests' quick polling and pacing."""
    values: dict[str, Any] = {
        "telegram_bot_token": world.TOKEN, "telegram_api_base": server.base_url,
        "agent_chat_id": world.AGENT_CHAT, "agent_language": "en",
        "database_url": database_url, "redis_url": redis_url, "provider": "local",
        "poll_interval_seconds": 0.3, "telegram_group_per_minute": 120, "http_listen": "",
    }
    return Settings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


@pytest.fixture
async def sandbox() -> AsyncIterator[FakeTelegramServer]:
    async with FakeTelegramServer(token=world.TOKEN) as server:
        world.populate(server)
        yield server


@contextlib.asynccontextmanager
async def page_for(server: FakeTelegramServer, desk: DemoDesk | None = None
                   ) -> AsyncIterator[SandboxPage]:
    page = SandboxPage(server, desk=desk)
    await page.start("127.0.0.1", 0)
    try:
        yield page
    finally:
        await page.stop()


@pytest.fixture
async def page(sandbox: FakeTelegramServer) -> AsyncIterator[SandboxPage]:
    async with page_for(sandbox) as page:
        yield page


@pytest.fixture
async def demo_bot(sandbox: FakeTelegramServer, migrated_url: str, redis_url: str | None
                   ) -> AsyncIterator[App]:
    async with running(demo_settings(sandbox, migrated_url, redis_url)) as app:
        yield app


class Browserless:
    """The page's HTTP API and event stream, as the page's JavaScript uses them."""

    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url = url
        self.http = http
        self._stream: aiohttp.ClientResponse | None = None
        self.events: list[dict[str, Any]] = []

    async def post(self, path: str, body: dict[str, Any], *, status: int = 200
                   ) -> dict[str, Any]:
        async with self.http.post(self.url + path, json=body) as response:
            answer: dict[str, Any] = await response.json()
            assert response.status == status, answer
            return answer

    async def open_stream(self) -> dict[str, Any]:
        """Connect to /api/events; returns the first event (the state)."""
        self._stream = await self.http.get(self.url + "/api/events")
        assert self._stream.headers["Content-Type"] == "text/event-stream"
        return await self.next_event()

    async def next_event(self) -> dict[str, Any]:
        assert self._stream is not None
        while True:
            line = (await self._stream.content.readline()).decode()
            if not line:
                raise AssertionError("the event stream ended")
            if line.startswith("data: "):
                event: dict[str, Any] = json.loads(line.removeprefix("data: "))
                self.events.append(event)
                return event

    async def wait_event(self, check: Callable[[dict[str, Any]], Any], timeout: float = 10.0,
                         *, past: bool = False) -> dict[str, Any]:
        """The next event `check` accepts (events before it are kept in `events`); with
        `past`, an event received earlier counts too (for changes in no fixed order)."""
        if past and (found := next((e for e in self.events if check(e)), None)):
            return found
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event = await self.next_event()
                    if check(event):
                        return event
        except TimeoutError:
            seen = "\n".join(_summary(event) for event in self.events[-12:])
            raise AssertionError(f"no such event within {timeout} s; the last ones:\n{seen}"
                                 ) from None

    async def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    async def __aenter__(self) -> Browserless:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _summary(event: dict[str, Any]) -> str:
    message = event.get("message")
    if not message:
        return json.dumps(event, ensure_ascii=False)[:200]
    content = [key for key in ("text", "caption", "photo", "document") if key in message]
    text = message.get("text") or message.get("caption") or ""
    return (f"{event['type']} chat={message['chat']['id']} id={message['message_id']} "
            f"from={message['from']['id']} {content} {text[:80]!r}")


@pytest.fixture
async def client(page: SandboxPage) -> AsyncIterator[Browserless]:
    async with aiohttp.ClientSession() as http, Browserless(page.url, http) as browserless:
        yield browserless


def message_in(chat_id: int, needle: str = "", *, bot: bool | None = None,
               edited: bool = False) -> Callable[[dict[str, Any]], bool]:
    """Matches a "message" event (or also an "edited" one) in `chat_id` whose text or
    caption contains `needle`."""
    def check(event: dict[str, Any]) -> bool:
        if event["type"] not in (("message", "edited") if edited else ("message",)):
            return False
        message = event["message"]
        text = message.get("text") or message.get("caption") or ""
        from_bot = message["from"]["id"] == int(world.TOKEN.split(":")[0])
        return (message["chat"]["id"] == chat_id and needle in text
                and (bot is None or bot == from_bot))
    return check


def button(message: dict[str, Any], label_part: str) -> str:
    for row in (message.get("reply_markup") or {}).get("inline_keyboard", []):
        for item in row:
            if label_part in item["text"]:
                return str(item["callback_data"])
    raise AssertionError(f"no button {label_part!r} in {message.get('reply_markup')}")
