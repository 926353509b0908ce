"""Inline mode through the fake Bot API: agents find tickets, canned replies and
articles; customers find public articles; a result inserted in a topic is the
agent's reply, once."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from bot.app import App
from bot.db.models import CannedReply, Message
from bot.sandbox.telegram_server import FakeTelegramServer
from bot.services.knowledge import KnowledgeService
from bot.services.types import TgUser
from bridges.base import Capability
from bridges.local.bridge import LocalDeskBridge
from tests.bot.conftest import AGENT_CHAT, ANNA, BORIS, IVAN, JANE, OUTSIDER, eventually, find
from tests.bot.test_flow import open_ticket


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # The customer's chat is paced at 1 message/s by default; these tests send many.
    return {"telegram_chat_interval": 0.05, "telegram_group_per_minute": 1200}

async def ask(tg: FakeTelegramServer, user_id: int, query: str, offset: str = ""
              ) -> tuple[str, dict[str, Any]]:
    """An inline query and the bot's answer."""
    query_id = tg.user_inline_query(user_id, query, offset=offset)["id"]
    answer = await tg.wait_for(lambda s: s.inline_answers.get(query_id))
    return query_id, answer


def ids(answer: dict[str, Any]) -> list[str]:
    return [result["id"] for result in answer["results"]]


async def add_canned(app: App, title: str, text: str, *, public: bool = True) -> int:
    knowledge: KnowledgeService = app.dispatcher["knowledge"]
    item = await knowledge.add_canned(TgUser(ANNA, "Anna"), title, text, public=public)
    return item.canned_id


async def test_agents_find_tickets_canned_and_articles(tg: FakeTelegramServer, app: App
                                                       ) -> None:
    await open_ticket(tg, JANE, "VPN is down\nSince the update")
    await open_ticket(tg, IVAN, "Принтер не печатает")
    password = await add_canned(app, "Password reset", "Open Settings → Security → Reset.")
    escalate = await add_canned(app, "Escalation script", "Call the on-duty admin.",
                                public=False)

    _, answer = await ask(tg, ANNA, "")
    assert answer["is_personal"] is True and answer["cache_time"] == 10
    # Open tickets (newest first), then canned replies (by title: none used yet);
    # their knowledge-base copies are not offered a second time.
    assert ids(answer) == ["t:2", "t:1", f"c:{escalate}", f"c:{password}"]
    ticket = answer["results"][1]
    assert ticket["title"] == "#1 VPN is down"
    assert "Jane" in ticket["description"]
    assert ticket["input_message_content"]["message_text"].startswith("🎫 <a href=")

    assert ids((await ask(tg, BORIS, "vpn"))[1]) == ["t:1"]  # subject, any case
    assert ids((await ask(tg, BORIS, "since the"))[1]) == ["t:1"]  # message text
    assert ids((await ask(tg, BORIS, "принтер"))[1]) == ["t:2"]  # Cyrillic, any case
    assert ids((await ask(tg, BORIS, "jane"))[1]) == ["t:1"]  # customer
    assert ids((await ask(tg, BORIS, "#2"))[1]) == ["t:2"]  # number
    assert ids((await ask(tg, BORIS, "reset"))[1]) == [f"c:{password}"]
    staff = (await ask(tg, BORIS, "script"))[1]["results"]
    assert [r["id"] for r in staff] == [f"c:{escalate}"] and "staff only" in staff[0]["title"]


async def test_customers_find_public_articles_only(tg: FakeTelegramServer, app: App) -> None:
    await open_ticket(tg, JANE, "VPN is down")
    public = await add_canned(app, "Password reset", "Open Settings → Security → Reset.")
    await add_canned(app, "Escalation script", "Call the on-duty admin.", public=False)
    bridge = app.bridge
    assert isinstance(bridge, LocalDeskBridge)
    article = next(a for a in await bridge.list_articles() if a.title == "Password reset")
    async with app.sessionmaker() as session:
        stored = await session.get(CannedReply, public)
        assert stored is not None and stored.remote_article_id == article.remote_id

    for user in (JANE, OUTSIDER):  # a customer, and someone who never wrote
        _, answer = await ask(tg, user, "")
        assert ids(answer) == [f"k:{article.remote_id}"]  # no tickets, no staff-only text
        assert answer["is_personal"] is True and answer["cache_time"] == 120
        assert answer["button"]["start_parameter"] == "new"
        result = answer["results"][0]
        assert result["input_message_content"]["message_text"] == (
            "<b>Password reset</b>\n\nOpen Settings → Security → Reset.")
    assert ids((await ask(tg, JANE, "escalation"))[1]) == []
    assert ids((await ask(tg, JANE, "RESET"))[1]) == [f"k:{article.remote_id}"]


async def test_results_are_paged(tg: FakeTelegramServer, app: App) -> None:
    for number in range(45):
        await add_canned(app, f"Reply {number:02d}", f"Canned text {number}")
    _, first = await ask(tg, ANNA, "reply")
    assert len(first["results"]) == 20 and first["next_offset"] == "20"
    _, second = await ask(tg, ANNA, "reply", offset="20")
    assert second["next_offset"] == "40"
    _, last = await ask(tg, ANNA, "reply", offset=second["next_offset"])
    assert len(last["results"]) == 5 and not last["next_offset"]
    seen = ids(first) + ids(second) + ids(last)
    assert len(set(seen)) == 45
    # A forged offset is clamped, not an error.
    _, forged = await ask(tg, ANNA, "reply", offset="-5; drop table")
    assert ids(forged) == ids(first)


async def test_a_result_picked_in_a_topic_is_the_agents_reply_once(
    tg: FakeTelegramServer, app: App
) -> None:
    topic, _ = await open_ticket(tg, JANE, "How do I reset my password?")
    canned = await add_canned(app, "Password reset", "Open Settings → Security → Reset.")
    query_id, _ = await ask(tg, ANNA, "password")
    tg.user_sends_inline_result(ANNA, AGENT_CHAT, query_id, f"c:{canned}", thread_id=topic)

    reply = await tg.wait_for(lambda s: find(s.sent_to(JANE), "Security → Reset"))
    assert "Anna" in reply["text"]

    async def used() -> int:
        async with app.sessionmaker() as session:
            return await session.scalar(
                select(CannedReply.use_count).where(CannedReply.id == canned)) or 0

    # chosen_inline_result (inline feedback on) only counts the use...
    await eventually(used)
    await tg.wait_updates_confirmed()
    await app.outbox.drain(timeout=2)
    # ...the reply went to the customer exactly once and is stored once.
    assert len([r for r in tg.sent_to(JANE) if "Security → Reset" in (r["text"] or "")]) == 1
    async with app.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Message).where(
            Message.author_kind == "agent")) == 1

    # An article picked the same way is a reply too.
    bridge = app.bridge
    assert isinstance(bridge, LocalDeskBridge)
    article = await bridge.add_article("VPN client", "Install the client from the portal.")
    query_id, answer = await ask(tg, ANNA, "portal")
    assert f"k:{article.remote_id}" in ids(answer)
    tg.user_sends_inline_result(ANNA, AGENT_CHAT, query_id, f"k:{article.remote_id}",
                                thread_id=topic, feedback=False)
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "Install the client"))


async def test_a_ticket_reference_in_a_topic_is_a_note(tg: FakeTelegramServer, app: App
                                                      ) -> None:
    await open_ticket(tg, IVAN, "Ivan's private matter")
    topic, _ = await open_ticket(tg, JANE, "Same problem as someone else")
    query_id, _ = await ask(tg, ANNA, "#1")
    tg.user_sends_inline_result(ANNA, AGENT_CHAT, query_id, "t:1", thread_id=topic)

    async def note() -> str | None:
        async with app.sessionmaker() as session:
            return await session.scalar(select(Message.text).where(
                Message.author_kind == "note"))

    assert "Ivan's private matter" in (await eventually(note) or "")
    await app.outbox.drain(timeout=2)
    assert not find(tg.sent_to(JANE), "private matter")


async def test_without_a_knowledge_base_customers_get_the_support_button(
    tg: FakeTelegramServer, migrated_url: str, redis_url: str | None
) -> None:
    from tests.bot.conftest import make_settings, running

    class NoKnowledgeBase(LocalDeskBridge):
        capabilities = LocalDeskBridge.capabilities - {Capability.KNOWLEDGE_BASE}

    settings = make_settings(tg, migrated_url, redis_url)
    from bot.db.session import create_engine

    engine = create_engine(migrated_url)
    try:
        async with running(settings, bridge=NoKnowledgeBase(engine)) as app:
            canned = await add_canned(app, "Hello", "Hello! How can we help?")
            async with app.sessionmaker() as session:
                stored = await session.get(CannedReply, canned)
                assert stored is not None and stored.remote_article_id is None
            _, answer = await ask(tg, JANE, "")
            assert answer["results"] == [] and answer["button"]["start_parameter"] == "new"
            assert ids((await ask(tg, ANNA, "hello"))[1]) == [f"c:{canned}"]
    finally:
        await engine.dispose()
