"""Plusofon end to end: the real bot against the fake Bot API server and the
fake Plusofon, both over HTTP on loopback. Telegram customers talk to
Plusofon's support; the agent chat mirrors."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.app import App
from bot.db.session import create_engine
from bot.sandbox.plusofon import FakePlusofon, FakeTicket
from bot.sandbox.telegram_server import FAKE_PDF, FakeTelegramServer
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


@pytest.fixture
async def plusofon() -> AsyncIterator[FakePlusofon]:
    async with FakePlusofon() as fake:
        yield fake


@contextlib.asynccontextmanager
async def bot_on_plusofon(tg: FakeTelegramServer, plusofon: FakePlusofon, database_url: str,
                          redis_url: str | None, **env: str) -> AsyncIterator[App]:
    engine = create_engine(database_url)  # the bridge's state, beside the bot's tables
    try:
        bridge = await create_bridge("plusofon", BridgeDeps(engine=engine,
                                                             env=plusofon.env(**env)))
        settings = make_settings(tg, database_url, redis_url, provider="plusofon")
        async with running(settings, bridge=bridge) as app:
            yield app
    finally:
        await engine.dispose()


@pytest.fixture
async def app(tg: FakeTelegramServer, plusofon: FakePlusofon, migrated_url: str,
              redis_url: str | None) -> AsyncIterator[App]:
    async with bot_on_plusofon(tg, plusofon, migrated_url, redis_url) as app:
        yield app


async def ticket_at_plusofon(plusofon: FakePlusofon, subject: str) -> FakeTicket:
    found: FakeTicket = await eventually(
        lambda: _value(plusofon.ticket_by_subject(subject)), lambda ticket: ticket is not None)
    return found


async def _value(value: Any) -> Any:
    return value


async def posts_with(plusofon: FakePlusofon, ticket: FakeTicket, text: str,
                     expected: int = 1) -> None:
    await eventually(lambda: _value(ticket.post_texts().count(text)),
                      lambda found: found >= expected)


async def settle(app: App) -> None:
    """Several poll cycles and deliveries: whatever would be echoed is by now."""
    for _ in range(3):
        await app.poll_provider()
    await app.outbox.drain(timeout=3)


async def test_customer_talks_to_plusofon_support(tg: FakeTelegramServer, app: App,
                                                  plusofon: FakePlusofon) -> None:
    # The customer's request becomes a ticket of the account.
    topic, card = await open_ticket(tg, IVAN, "Не работает SIP\nС утра нет регистрации")
    ticket = await ticket_at_plusofon(plusofon, "Не работает SIP")
    # The company account speaks for every customer: the ticket says who asks.
    assert ticket.post_texts() == [
        f"Telegram: Ivan, @ivan, id {IVAN}\n\nНе работает SIP\nС утра нет регистрации"]
    assert f"#{ticket.id}" in card["text"]
    assert card["reply_markup"] is None  # nothing an agent could do at Plusofon
    await tg.wait_for(lambda s: find(s.sent_to(IVAN), f"#{ticket.id}"))

    # Support's answer reaches the customer and the topic.
    plusofon.support_answers(ticket.id, "Перезагрузите роутер, пожалуйста")
    answer = await tg.wait_for(lambda s: find(s.sent_to(IVAN), "Перезагрузите роутер"))
    assert "Оператор" in answer["text"]
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "Перезагрузите роутер"))

    # The customer's follow-ups go to the ticket, a file too.
    tg.user_sends_text(IVAN, IVAN, "Не помогло")
    await posts_with(plusofon, ticket, "Не помогло")
    tg.user_sends_document(IVAN, IVAN, file_name="log.pdf")
    await eventually(lambda: _value([p.files for p in ticket.posts if p.files]),
                      lambda files: files == [{"log.pdf": FAKE_PDF}])
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "Не помогло"))

    # Own posts come back in every read of the ticket and are never echoed.
    await settle(app)
    assert count(tg, IVAN, "Не помогло") == 0
    assert count(tg, AGENT_CHAT, "Не помогло", topic) == 1
    assert count(tg, IVAN, "Перезагрузите роутер") == 1
    assert count(tg, AGENT_CHAT, "Перезагрузите роутер", topic) == 1

    # Agents cannot answer through a customer-side API: they are told so, once.
    posts_before = len(ticket.posts)
    tg.user_sends_text(ANNA, AGENT_CHAT, "Мы уже разбираемся", thread_id=topic)
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "takes no replies"))
    tg.user_sends_text(ANNA, AGENT_CHAT, "И ещё", thread_id=topic)
    await settle(app)
    assert len(ticket.posts) == posts_before
    assert count(tg, IVAN, "Мы уже разбираемся") == 0
    assert count(tg, AGENT_CHAT, "takes no replies", topic) == 1

    # Support closes the ticket: both sides are told.
    plusofon.support_answers(ticket.id, "Проблема на нашей стороне устранена")
    plusofon.close(ticket.id)
    await tg.wait_for(lambda s: find(s.sent_to(IVAN), "устранена"))
    await tg.wait_for(lambda s: find(s.sent_to(IVAN), "закрыто"))
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "Closed in the helpdesk"))


async def test_failures_are_retried_and_nothing_is_lost(tg: FakeTelegramServer, app: App,
                                                        plusofon: FakePlusofon) -> None:
    await open_ticket(tg, JANE, "Invoice is wrong")
    ticket = await ticket_at_plusofon(plusofon, "Invoice is wrong")
    await tg.wait_for(lambda s: find(s.sent_to(JANE), f"#{ticket.id}"))

    # A 500 before the answer is stored: the outbox tries again.
    plusofon.fail_next("PUT", "api/v1/ticket/answer", 500)
    tg.user_sends_text(JANE, JANE, "Second line of the invoice")
    await posts_with(plusofon, ticket, "Second line of the invoice")

    # A 500 after the answer was stored: the retry finds it, writes nothing twice.
    plusofon.fail_next("PUT", "api/v1/ticket/answer", 502, "Bad Gateway", after=True)
    tg.user_sends_text(JANE, JANE, "Third line of the invoice")
    await posts_with(plusofon, ticket, "Third line of the invoice")

    # The token expires: the bridge signs in again.
    logins = plusofon.logins
    plusofon.expire_tokens()
    tg.user_sends_text(JANE, JANE, "After the token expired")
    await posts_with(plusofon, ticket, "After the token expired")
    assert plusofon.logins == logins + 1

    # The poll fails twice: support's answer still arrives, once.
    plusofon.fail_next("GET", "api/v1/ticket", 500, times=2)
    plusofon.support_answers(ticket.id, "Corrected invoice attached")
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "Corrected invoice"), timeout=15)

    await settle(app)
    for text in ("Second line of the invoice", "Third line of the invoice",
                 "After the token expired"):
        assert ticket.post_texts().count(text) == 1
        assert count(tg, JANE, text) == 0
    assert count(tg, JANE, "Corrected invoice") == 1


async def test_a_ready_token_is_used_as_is(tg: FakeTelegramServer, plusofon: FakePlusofon,
                                           migrated_url: str, redis_url: str | None) -> None:
    async with bot_on_plusofon(tg, plusofon, migrated_url, redis_url,
                               PLUSOFON_TOKEN=plusofon.issue_token(),
                               PLUSOFON_EMAIL="", PLUSOFON_PASSWORD=""):
        await open_ticket(tg, IVAN, "Номер не звонит")
        await ticket_at_plusofon(plusofon, "Номер не звонит")
    assert plusofon.logins == 0
