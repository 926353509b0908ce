"""The topic list shows each ticket's state: the topic's name carries the
status, a closed ticket's topic is closed (and reopened with the ticket), the
card is pinned. Every call goes through the outbox and the one send path."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from bot.app import App
from bot.db.models import OutboxItem, Ticket
from bot.outbox import sync_topic
from bot.sandbox.telegram_server import FakeTelegramServer
from tests.bot.conftest import AGENT_CHAT, ANNA, JANE, eventually, find
from tests.bot.test_flow import open_ticket


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"telegram_chat_interval": 0.05, "telegram_group_per_minute": 1200}


def topic(tg: FakeTelegramServer, thread_id: int) -> dict:
    return tg.topics[AGENT_CHAT][thread_id]


async def test_topic_follows_the_ticket(tg: FakeTelegramServer, app: App) -> None:
    thread, card = await open_ticket(tg, JANE, "Invoice is wrong")
    assert topic(tg, thread)["name"] == "🟢 #1 Invoice is wrong — Jane"
    await tg.wait_for(lambda s: s.pinned.get(AGENT_CHAT) == [card["message_id"]])
    assert tg.calls("pinChatMessage")[0]["disable_notification"] in (True, "true")

    # An answer: the desk sets "waiting for the customer".
    tg.user_sends_text(ANNA, AGENT_CHAT, "Which invoice?", thread_id=thread)
    await tg.wait_for(lambda s: topic(s, thread)["name"].startswith("🟡 #1"))
    # The customer writes: open again.
    tg.user_sends_text(JANE, JANE, "Number 5")
    await tg.wait_for(lambda s: topic(s, thread)["name"].startswith("🟢 #1"))

    tg.user_sends_text(ANNA, AGENT_CHAT, "/close", thread_id=thread)
    await tg.wait_for(lambda s: topic(s, thread)["closed"])
    assert topic(tg, thread)["name"] == "✅ #1 Invoice is wrong — Jane"
    # The closing notice went into the topic before it closed.
    assert find(tg.sent_to(AGENT_CHAT, thread), "closed")

    tg.user_sends_text(ANNA, AGENT_CHAT, "/reopen", thread_id=thread)
    await tg.wait_for(lambda s: not topic(s, thread)["closed"]
                      and topic(s, thread)["name"].startswith("🟢 #1"))
    await app.outbox.drain(timeout=2)
    # Pinned once; each change one rename, closed and reopened once.
    assert len(tg.calls("pinChatMessage")) == 1
    assert len(tg.calls("closeForumTopic")) == 1
    assert len(tg.calls("reopenForumTopic")) == 1
    assert [c["name"].split()[0] for c in tg.calls("editForumTopic")] == ["🟡", "🟢", "✅", "🟢"]


async def test_topic_rows_are_coalesced(tg: FakeTelegramServer, app: App) -> None:
    thread, _ = await open_ticket(tg, JANE, "Quick flip")
    await tg.wait_for(lambda s: s.pinned.get(AGENT_CHAT))
    await app.outbox.drain(timeout=2)
    calls = len(tg.requests)
    # Three queued rows for a topic that shows the right state: no call at all.
    async with app.sessionmaker.begin() as session:
        ticket = await session.scalar(select(Ticket))
        assert ticket is not None and ticket.tg_topic_status == "open"
        rows = [sync_topic(session, ticket.id) for _ in range(3)]
    await eventually(lambda: _statuses(app, rows), lambda found: found == ["done"] * 3)
    assert [name for name, _ in tg.requests[calls:] if name != "getUpdates"] == []

    # The ticket changed twice before its rows ran: one rename to where it is now.
    async with app.sessionmaker.begin() as session:
        ticket = await session.scalar(select(Ticket))
        assert ticket is not None
        ticket.status = "waiting"
        rows = [sync_topic(session, ticket.id) for _ in range(3)]
    await eventually(lambda: _statuses(app, rows), lambda found: found == ["done"] * 3)
    renames = tg.calls("editForumTopic")
    assert [c["name"].split()[0] for c in renames] == ["🟡"]
    assert not topic(tg, thread)["closed"]


async def _statuses(app: App, rows: list[OutboxItem]) -> list[str]:
    async with app.sessionmaker() as session:
        return [str(await session.scalar(select(OutboxItem.status).where(
            OutboxItem.id == row.id))) for row in rows]


async def test_without_pin_rights_the_card_stays_unpinned(tg: FakeTelegramServer,
                                                          app: App) -> None:
    tg.chats[AGENT_CHAT].bot_rights["can_pin_messages"] = False
    thread, _ = await open_ticket(tg, JANE, "No pins here")
    await tg.wait_for(lambda s: s.calls("pinChatMessage"))
    tg.user_sends_text(ANNA, AGENT_CHAT, "/close", thread_id=thread)
    await tg.wait_for(lambda s: topic(s, thread)["closed"])
    assert tg.pinned.get(AGENT_CHAT) is None
    assert len(tg.calls("pinChatMessage")) == 1  # tried once, not again and again
