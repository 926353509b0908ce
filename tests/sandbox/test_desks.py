"""`deskbridge demo --provider`: each fake helpdesk with its page, the real bot
between it and the sandbox Telegram, over real HTTP both ways."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.sandbox.desks import DESKS, DemoDesk
from bot.sandbox.telegram_server import FakeTelegramServer
from tests.bot.conftest import running
from tests.sandbox.conftest import (
    GROUP,
    IVAN,
    Browserless,
    button,
    demo_settings,
    message_in,
    page_for,
)


@pytest.fixture(params=sorted(DESKS))
async def desk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
               ) -> AsyncIterator[DemoDesk]:
    desk = DESKS[request.param]()
    await desk.start()
    try:
        for name, value in desk.env().items():  # the bridge reads them, as in production
            monkeypatch.setenv(name, value)
        yield desk
    finally:
        await desk.stop()


async def ticket_with(client: Browserless, text: str, timeout: float = 15.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        async with client.http.get(client.url + "/api/helpdesk") as response:
            state = await response.json()
        for ticket in state["tickets"]:
            if any(text in message["text"] for message in ticket["messages"]):
                return ticket | {"desk": state}
        assert loop.time() < deadline, f"no ticket with {text!r} in {state}"
        await asyncio.sleep(0.1)


async def test_the_helpdesks_agent_answers_from_its_page(
    desk: DemoDesk, sandbox: FakeTelegramServer, migrated_url: str, redis_url: str | None
) -> None:
    settings = demo_settings(sandbox, migrated_url, redis_url, provider=desk.name)
    async with (page_for(sandbox, desk) as page, running(settings),
                aiohttp.ClientSession() as http, Browserless(page.url, http) as client):
        state = await client.open_stream()
        assert state["helpdesk"] == {"name": desk.title, "url": "/helpdesk"}
        async with http.get(page.url + "/helpdesk") as response:
            assert response.status == 200 and "helpdesk.js" in await response.text()

        await client.post("/api/send", {"user_id": IVAN, "chat_id": IVAN,
                                        "text": "Не работает VPN\nс самого утра"})
        if desk.name == "zenlix":  # Zenlix files tickets by department: the customer picks one
            question = await client.wait_event(lambda e: message_in(IVAN, bot=True)(e)
                                               and "Billing" in str(e["message"]))
            await client.post("/api/press", {
                "user_id": IVAN, "chat_id": IVAN, "message_id": question["message"]["message_id"],
                "data": button(question["message"], "Billing")})
        await client.wait_event(message_in(GROUP, "с самого утра", bot=True))
        ticket = await ticket_with(client, "Не работает VPN")
        assert not ticket["closed"]

        # The helpdesk's agent answers on the page: the customer and the topic get it.
        await client.post("/api/helpdesk/reply", {"ticket": ticket["id"],
                                                  "text": "Перезагрузите роутер"})
        answer = await client.wait_event(message_in(IVAN, "Перезагрузите роутер", bot=True),
                                         timeout=20)
        assert ticket["desk"]["agent"].split()[0] in answer["message"]["text"]
        await client.wait_event(message_in(GROUP, "Перезагрузите роутер", bot=True), past=True)

        # The customer's follow-up reaches the helpdesk's ticket.
        await client.post("/api/send", {"user_id": IVAN, "chat_id": IVAN, "text": "Помогло"})
        followed = await ticket_with(client, "Помогло")
        assert followed["id"] == ticket["id"]
        # Zenlix cannot comment as a client: the bridge's account writes, naming the customer.
        [(side, text)] = [(m["side"], m["text"]) for m in followed["messages"]
                          if "Помогло" in m["text"]]
        if desk.name == "zenlix":
            assert (side, text) == ("relayed", "Иван Петров (Telegram): Помогло")
        else:
            assert (side, text) == ("customer", "Помогло")

        if not ticket["desk"]["close"]:
            refused = await client.post("/api/helpdesk/close", {"ticket": ticket["id"]},
                                        status=400)
            assert "not closed" in refused["error"]
            return
        # Closed in the helpdesk: the customer is told (in Russian) and asked to rate.
        await client.post("/api/helpdesk/close", {"ticket": ticket["id"]})
        await client.wait_event(message_in(IVAN, "закрыт", bot=True), timeout=20)
        assert (await ticket_with(client, "Помогло"))["closed"] is True
