"""iqstore end to end: the real bot against the fake Bot API server and the
fake iqstore, both over HTTP on loopback. Each Telegram customer is an
iqstore client of their own; agents answer from Telegram into the iqstore
ticket once iqstore has linked the conversation to one."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.app import App
from bot.db.session import create_engine
from bot.sandbox.iqstore import FakeClient, FakeIqstore
from bot.sandbox.telegram_server import FAKE_JPEG, FakeTelegramServer
from bridges.registry import BridgeDeps, create_bridge
from tests.bot.conftest import (
    AGENT_CHAT,
    ANNA,
    IVAN,
    JANE,
    eventually,
    find,
    make_settings,
    running,
)
from tests.bot.test_delivery import count
from tests.bot.test_flow import open_ticket

SEND = "/chats/channel/send/support"
HISTORY = "/chats/channel/messages/support"


@pytest.fixture
async def iqstore() -> AsyncIterator[FakeIqstore]:
    async with FakeIqstore() as fake:
        yield fake


@contextlib.asynccontextmanager
async def bot_on_iqstore(tg: FakeTelegramServer, iqstore: FakeIqstore, database_url: str,
                         redis_url: str | None) -> AsyncIterator[App]:
    engine = create_engine(database_url)  # the bridge's state, beside the bot's tables
    try:
        bridge = await create_bridge("iqstore", BridgeDeps(
            # Busy chats are read at every (fast) poll of the tests.
            engine=engine, env=iqstore.env(agent_side=True, IQSTORE_MIN_READ_SECONDS="0")))
        settings = make_settings(tg, database_url, redis_url, provider="iqstore")
        async with running(settings, bridge=bridge) as app:
            yield app
    finally:
        await engine.dispose()


@pytest.fixture
async def app(tg: FakeTelegramServer, iqstore: FakeIqstore, migrated_url: str,
              redis_url: str | None) -> AsyncIterator[App]:
    async with bot_on_iqstore(tg, iqstore, migrated_url, redis_url) as app:
        yield app


async def _value(value: Any) -> Any:
    return value


async def client_of(iqstore: FakeIqstore, name: str) -> FakeClient:
    found: FakeClient = await eventually(lambda: _value(iqstore.client_named(name)),
                                          lambda client: client is not None)
    return found


async def chat_has(iqstore: FakeIqstore, client: FakeClient, text: str) -> None:
    await eventually(lambda: _value(iqstore.texts(client.id).count(text)),
                      lambda found: found >= 1)


async def settle(app: App) -> None:
    """Several poll cycles and deliveries: whatever would be echoed is by now."""
    for _ in range(3):
        await app.poll_provider()
    await app.outbox.drain(timeout=3)


async def test_customer_and_agents_talk_through_iqstore(tg: FakeTelegramServer, app: App,
                                                        iqstore: FakeIqstore) -> None:
    # The customer's request opens a conversation in their own iqstore chat.
    topic, card = await open_ticket(tg, IVAN, "Заказ не пришёл\nНомер 4417")
    client = await client_of(iqstore, "Ivan (@ivan)")
    await chat_has(iqstore, client, "Заказ не пришёл\nНомер 4417")
    opening = iqstore.chats[client.id][0]
    assert opening["LocalId"] >= 2**51  # the bridge's own, derived from the outbox key
    assert f"#{opening['Id']}" in card["text"]

    # iqstore's agent answers from a ticket: customer and topic get it.
    ticket_id = iqstore.open_ticket(client.id)
    iqstore.agent_replies(client.id, "Проверяем, где посылка", ticket_id=ticket_id)
    answer = await tg.wait_for(lambda s: find(s.sent_to(IVAN), "Проверяем, где посылка"))
    assert "Мария" in answer["text"]
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "Проверяем, где посылка"))

    # The customer's follow-ups and files go to the same chat.
    tg.user_sends_text(IVAN, IVAN, "Спасибо, жду")
    await chat_has(iqstore, client, "Спасибо, жду")
    tg.user_sends_photo(IVAN, IVAN, caption="Вот квитанция")
    await chat_has(iqstore, client, "Вот квитанция")
    [photo] = [m for m in iqstore.chats[client.id] if m["Text"] == "Вот квитанция"]
    stored = iqstore.files[photo["FileId"]]
    assert (stored.data, stored.type) == (FAKE_JPEG, "image")

    # An agent answers in the topic: it goes to the iqstore ticket, once.
    tg.user_sends_text(ANNA, AGENT_CHAT, "Посылка уже в пути", thread_id=topic)
    await tg.wait_for(lambda s: find(s.sent_to(IVAN), "Посылка уже в пути"))
    written = await eventually(lambda: _value([m for m in iqstore.ticket_messages.values()
                                                if "Посылка уже в пути" in m["Text"]]),
                                lambda found: len(found) == 1)
    assert written[0]["TicketId"] == ticket_id and written[0]["Text"].startswith("Anna")

    # Own messages come back in every chat read and are never echoed.
    await settle(app)
    assert count(tg, IVAN, "Спасибо, жду") == 0
    assert count(tg, AGENT_CHAT, "Спасибо, жду", topic) == 1
    assert count(tg, IVAN, "Посылка уже в пути") == 1
    assert count(tg, AGENT_CHAT, "Посылка уже в пути") == 0  # Anna's own message is there
    assert count(tg, IVAN, "Проверяем, где посылка") == 1
    assert len(iqstore.ticket_messages) == 2


async def test_failures_are_retried_and_nothing_is_lost(tg: FakeTelegramServer, app: App,
                                                        iqstore: FakeIqstore) -> None:
    topic, _ = await open_ticket(tg, JANE, "Refund please")
    client = await client_of(iqstore, "Jane")
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "Refund please"))

    # The session expires: the bridge renews it and sends.
    iqstore.expire_sessions()
    tg.user_sends_text(JANE, JANE, "After the session expired")
    await chat_has(iqstore, client, "After the session expired")

    # A failure answered after the send was stored: the retry finds it by LocalId.
    iqstore.fail_next(SEND, code="internal_server_error", after=True)
    tg.user_sends_text(JANE, JANE, "Stored before the failure")
    await chat_has(iqstore, client, "Stored before the failure")

    # A failure before the send: the retry sends it.
    iqstore.fail_next(SEND, http_status=502)
    tg.user_sends_text(JANE, JANE, "Sent on the retry")
    await chat_has(iqstore, client, "Sent on the retry")

    # Reading the chat fails twice: the agent's answer still arrives, once.
    iqstore.fail_next(HISTORY, http_status=502, times=2)
    iqstore.agent_replies(client.id, "Refund approved")
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "Refund approved"), timeout=15)

    await settle(app)
    texts = iqstore.texts(client.id)
    for text in ("After the session expired", "Stored before the failure", "Sent on the retry"):
        assert texts.count(text) == 1
        assert count(tg, JANE, text) == 0
        assert count(tg, AGENT_CHAT, text, topic) == 1
    assert count(tg, JANE, "Refund approved") == 1


async def test_agent_reply_without_a_known_ticket_is_reported(
    tg: FakeTelegramServer, app: App, iqstore: FakeIqstore
) -> None:
    topic, _ = await open_ticket(tg, JANE, "Where is my parcel")
    await client_of(iqstore, "Jane")
    tg.user_sends_text(ANNA, AGENT_CHAT, "Let me check", thread_id=topic)
    # The bridge refuses (Invalid): a dead letter the agents are told about.
    notice = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "Could not deliver"))
    assert "The helpdesk refused it" in notice["text"]
    assert not iqstore.ticket_messages
