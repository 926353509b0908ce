"""Events from the customer's side: an edited message updates the bot's copy
in the topic (and the helpdesk gets a note); blocking the bot shows on the card."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from bot.app import App
from bot.db.models import Message
from bot.sandbox.telegram_server import FakeTelegramServer
from bridges.local.models import LocalMessage
from tests.bot.conftest import AGENT_CHAT, JANE, eventually, find
from tests.bot.test_agents import card_now
from tests.bot.test_flow import open_ticket


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"telegram_chat_interval": 0.05, "telegram_group_per_minute": 1200}


async def desk_texts(app: App, kind: str) -> list[str]:
    async with app.sessionmaker() as session:
        return list(await session.scalars(select(LocalMessage.text).where(
            LocalMessage.author_kind == kind).order_by(LocalMessage.id)))


async def test_an_edit_edits_the_mirror_and_notes_the_helpdesk(tg: FakeTelegramServer,
                                                               app: App) -> None:
    topic, card = await open_ticket(tg, JANE, "Printer broken")
    sent = tg.user_sends_text(JANE, JANE, "It shows error 42")
    mirror = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "error 42"))
    await eventually(lambda: _has(app, "customer", "It shows error 42"))

    tg.user_edits_text(JANE, JANE, sent["message_id"], "It shows error 43")
    await tg.wait_for(lambda s: "error 43" in (_record(s, mirror)["text"] or ""))
    edited = _record(tg, mirror)
    assert edited["edits"][-1]["method"] == "editMessageText"
    assert "edited" in edited["text"] and "error 42" not in edited["text"]
    async with app.sessionmaker() as session:
        stored = await session.scalar(select(Message).where(
            Message.text == "It shows error 43"))
        assert stored is not None and stored.edited_at is not None
    notes = await eventually(lambda: desk_texts(app, "note"))
    assert notes == ["The customer edited a message in Telegram.\n"
                     "Was: It shows error 42\nNow: It shows error 43"]

    # The same edit handed out again changes nothing.
    tg.user_edits_text(JANE, JANE, sent["message_id"], "It shows error 43")
    await tg.wait_updates_confirmed()
    await app.outbox.drain(timeout=2)
    assert len(_record(tg, mirror)["edits"]) == 1
    assert len(await desk_texts(app, "note")) == 1

    # The opening message lives on the card: the card shows the new text.
    first = tg.chats[JANE].messages[min(m for m, v in tg.chats[JANE].messages.items()
                                        if v["from"]["id"] == JANE)]
    tg.user_edits_text(JANE, JANE, first["message_id"], "Printer broken\nsince Monday")
    await tg.wait_for(lambda s: "since Monday" in card_now(s, card)["text"])


async def test_an_edit_of_a_long_message_is_posted_anew(tg: FakeTelegramServer, app: App
                                                        ) -> None:
    topic, _ = await open_ticket(tg, JANE, "Logs attached")
    long_text = "log line\n" * 455  # 4094 characters: with its header, two messages
    sent = tg.user_sends_text(JANE, JANE, long_text.strip())
    await tg.wait_for(lambda s: len([r for r in s.sent_to(AGENT_CHAT, topic)
                                     if "log line" in (r["text"] or "")]) == 2)
    tg.user_edits_text(JANE, JANE, sent["message_id"], "Sorry, wrong paste: see the file")
    notice = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "wrong paste"))
    assert "Jane</b> edited a message" in (notice["html"] or "")


async def test_blocking_the_bot_shows_on_the_card(tg: FakeTelegramServer, app: App) -> None:
    topic, card = await open_ticket(tg, JANE, "Blocked soon")
    tg.my_chat_member(JANE, "kicked")
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "has blocked the bot"))
    await tg.wait_for(lambda s: "blocked the bot" in card_now(s, card)["text"])
    tg.my_chat_member(JANE, "member")
    await tg.wait_for(lambda s: "blocked the bot" not in card_now(s, card)["text"])


def _record(tg: FakeTelegramServer, sent: dict) -> dict:
    return next(r for r in tg.sent if (r["chat_id"], r["message_id"]) == (
        sent["chat_id"], sent["message_id"]))


async def _has(app: App, kind: str, text: str) -> bool:
    return text in await desk_texts(app, kind)
