"""Bans and flood control, end to end through the fake Bot API server."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from bot.app import App
from bot.db.models import Message, Ticket
from bot.sandbox.telegram_server import FakeTelegramServer
from bot.services import tickets as tickets_module
from bridges.local.models import LocalMessage
from tests.bot.conftest import AGENT_CHAT, ANNA, JANE, OUTSIDER, eventually, find, texts
from tests.bot.test_flow import open_ticket

BANNED_NOTICE = "no longer takes your messages"
SLOW_DOWN = "writing very fast"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"telegram_chat_interval": 0.05, "telegram_group_per_minute": 1200,
            "customer_messages_per_minute": 3}


async def desk_customer_texts(app: App) -> list[str]:
    async with app.sessionmaker() as session:
        return list(await session.scalars(select(LocalMessage.text).where(
            LocalMessage.author_kind == "customer").order_by(LocalMessage.id)))


async def test_ban_in_a_topic_keeps_the_customer_out_and_tells_them_once(
        tg: FakeTelegramServer, app: App) -> None:
    topic, _ = await open_ticket(tg, JANE, "Buy cheap watches")
    await eventually(lambda: desk_customer_texts(app), lambda found: len(found) == 1)

    tg.user_sends_text(ANNA, AGENT_CHAT, "/ban spam", thread_id=topic)
    reply = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "is banned"))
    assert "Jane" in reply["text"] and "spam" in reply["text"]

    for text in ("cheap watches!!!", "more watches", "/start"):
        tg.user_sends_text(JANE, JANE, text)
    await tg.wait_updates_confirmed()
    await app.outbox.drain(timeout=2)
    assert [t for t in texts(tg.sent_to(JANE)) if BANNED_NOTICE in t] == [
        "Sorry, support no longer takes your messages here. If you think this is a "
        "mistake, please contact the company another way."]
    assert not find(tg.sent_to(AGENT_CHAT, topic), "watches!!!")
    assert await desk_customer_texts(app) == ["Buy cheap watches"]
    async with app.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 1

    tg.user_sends_text(ANNA, AGENT_CHAT, "/bans")
    listed = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "Banned: 1"))
    assert f"Jane · {JANE} · spam · by Anna" in listed["text"]

    tg.user_sends_text(ANNA, AGENT_CHAT, "/unban", thread_id=topic)
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "no longer banned"))
    tg.user_sends_text(JANE, JANE, "Sorry, I will behave")
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "I will behave"))
    await eventually(lambda: desk_customer_texts(app),
                     lambda found: found[-1] == "Sorry, I will behave")


async def test_ban_by_id_before_they_write_opens_nothing(tg: FakeTelegramServer, app: App
                                                         ) -> None:
    tg.user_sends_text(ANNA, AGENT_CHAT, f"/ban {OUTSIDER} known spammer")
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), f"{OUTSIDER}) is banned"))
    tg.user_sends_text(OUTSIDER, OUTSIDER, "Hello, I have an offer")
    tg.user_sends_text(OUTSIDER, OUTSIDER, "A great offer")
    await tg.wait_updates_confirmed()
    await app.outbox.drain(timeout=2)
    assert len([t for t in texts(tg.sent_to(OUTSIDER)) if BANNED_NOTICE in t]) == 1
    assert tg.calls("createForumTopic") == []
    async with app.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Ticket)) == 0

    # Banned again after an unban: one notice again.
    tg.user_sends_text(ANNA, AGENT_CHAT, f"/unban {OUTSIDER}")
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "no longer banned"))
    tg.user_sends_text(ANNA, AGENT_CHAT, f"/ban {OUTSIDER}")
    await tg.wait_for(lambda s: len([t for t in texts(s.sent_to(AGENT_CHAT))
                                     if "is banned" in t]) == 2)
    tg.user_sends_text(OUTSIDER, OUTSIDER, "Hello again")
    await tg.wait_for(lambda s: len([t for t in texts(s.sent_to(OUTSIDER))
                                     if BANNED_NOTICE in t]) == 2)


async def test_ban_usage(tg: FakeTelegramServer, app: App) -> None:
    tg.user_sends_text(ANNA, AGENT_CHAT, "/ban")
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "Usage: /ban"))
    tg.user_sends_text(ANNA, AGENT_CHAT, f"/ban {ANNA}")
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "cannot ban yourself"))
    # Outside the agent chat the command is an agent's command: refused to others.
    tg.user_sends_text(OUTSIDER, OUTSIDER, f"/ban {JANE}")
    await tg.wait_for(lambda s: find(s.sent_to(OUTSIDER), "agents only"))


async def test_a_flood_is_merged_into_one_mirror_and_one_helpdesk_message(
        tg: FakeTelegramServer, app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tickets_module, "FLOOD_MERGE_SECONDS", 1.5)
    monkeypatch.setattr(tickets_module, "FLOOD_DELIVERY_MARGIN_SECONDS", 0.5)
    topic, _ = await open_ticket(tg, JANE, "Order 77 is late")
    tg.user_sends_text(JANE, JANE, "second")
    tg.user_sends_text(JANE, JANE, "third")
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "third"))
    # Three in this minute: the next ones are merged.
    flood = [f"flood {n}" for n in range(1, 7)]
    for text in flood:
        tg.user_sends_text(JANE, JANE, text)
    tg.user_sends_photo(JANE, JANE, caption="a photo too")
    merged = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "flood 1"))
    assert all(text in merged["text"] for text in flood)
    assert "a photo too" in merged["text"] or find(tg.sent_to(AGENT_CHAT, topic),
                                                   "a photo too")
    photos = await tg.wait_for(lambda s: [r for r in s.sent_to(AGENT_CHAT, topic)
                                          if r["media_type"] == "photo"])
    assert len(photos) == 1
    assert len([t for t in texts(tg.sent_to(AGENT_CHAT, topic)) if "flood" in t]) == 1

    found = await eventually(lambda: desk_customer_texts(app), lambda found: len(found) == 4)
    assert found[:3] == ["Order 77 is late", "second", "third"]
    assert found[3] == "\n\n".join([*flood, "a photo too"])
    slow = [t for t in texts(tg.sent_to(JANE)) if SLOW_DOWN in t]
    assert len(slow) == 1 and "#1" in slow[0]
    async with app.sessionmaker() as session:
        parts = await session.scalar(select(Message.parts).where(
            Message.text.like("flood 1%")))
    assert parts == 7
