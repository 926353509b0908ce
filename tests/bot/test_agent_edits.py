"""An agent edits their reply in the topic (an `edited_message` update in the
group): the customer's copy is edited, the helpdesk gets a note."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from bot.app import App
from bot.sandbox.telegram_server import FakeTelegramServer
from bridges.local.models import LocalMessage
from tests.bot.conftest import AGENT_CHAT, ANNA, JANE, eventually, find, texts
from tests.bot.test_flow import open_ticket


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"telegram_chat_interval": 0.05, "telegram_group_per_minute": 1200}


async def desk(app: App, kind: str) -> list[str]:
    async with app.sessionmaker() as session:
        return list(await session.scalars(select(LocalMessage.text).where(
            LocalMessage.author_kind == kind).order_by(LocalMessage.id)))


def record(tg: FakeTelegramServer, sent: dict) -> dict:
    return next(r for r in tg.sent if (r["chat_id"], r["message_id"]) == (
        sent["chat_id"], sent["message_id"]))


async def test_an_agent_edit_reaches_the_customer_and_the_helpdesk(
        tg: FakeTelegramServer, app: App) -> None:
    topic, _ = await open_ticket(tg, JANE, "Router keeps rebooting")
    reply = tg.user_sends_text(ANNA, AGENT_CHAT, "Restart teh router", thread_id=topic)
    copy = await tg.wait_for(lambda s: find(s.sent_to(JANE), "Restart teh router"))
    await eventually(lambda: desk(app, "agent"), lambda found: found == ["Restart teh router"])

    tg.user_edits_text(ANNA, AGENT_CHAT, reply["message_id"], "Restart the router")
    await tg.wait_for(lambda s: "Restart the router" in (record(s, copy)["text"] or ""))
    edited = record(tg, copy)
    assert edited["edits"][-1]["method"] == "editMessageText"
    assert "edited" in edited["text"] and "Anna" in edited["text"]
    notes = await eventually(lambda: desk(app, "note"))
    assert notes == ["The agent edited this reply in Telegram; the customer sees the new text."
                     "\nWas: Restart teh router\nNow: Restart the router"]

    # Handed out again: nothing more.
    tg.user_edits_text(ANNA, AGENT_CHAT, reply["message_id"], "Restart the router")
    await tg.wait_updates_confirmed()
    await app.outbox.drain(timeout=2)
    assert len(record(tg, copy)["edits"]) == 1
    assert len(await desk(app, "note")) == 1

    # A note edited: the helpdesk is told, the customer sees nothing.
    note = tg.user_sends_text(ANNA, AGENT_CHAT, "# check the logs", thread_id=topic)
    await eventually(lambda: desk(app, "note"), lambda found: "check the logs" in found)
    tg.user_edits_text(ANNA, AGENT_CHAT, note["message_id"], "# check the kernel logs")
    found = await eventually(lambda: desk(app, "note"), lambda found: len(found) == 3)
    assert found[-1] == ("The agent edited an internal note in Telegram.\n"
                         "Was: check the logs\nNow: check the kernel logs")
    assert not [t for t in texts(tg.sent_to(JANE)) if "logs" in t]

    # Agents talking among themselves outside tickets: edits change nothing.
    chat = tg.user_sends_text(ANNA, AGENT_CHAT, "lunch?")
    tg.user_edits_text(ANNA, AGENT_CHAT, chat["message_id"], "lunch at 1?")
    await tg.wait_updates_confirmed()
    await app.outbox.drain(timeout=2)
    assert len(await desk(app, "note")) == 3


async def test_an_edit_of_a_reply_with_a_file_is_sent_anew(tg: FakeTelegramServer, app: App
                                                            ) -> None:
    topic, _ = await open_ticket(tg, JANE, "Need the manual")
    reply = tg.user_sends_photo(ANNA, AGENT_CHAT, caption="Here is the manul", thread_id=topic)
    await tg.wait_for(lambda s: [r for r in s.sent_to(JANE) if r["media_type"] == "photo"])
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "manul"))
    message = tg.chats[AGENT_CHAT].messages[reply["message_id"]]
    message["caption"] = "Here is the manual"
    message["edit_date"] = message["date"] + 5
    tg.push_update({"edited_message": message})
    fixed = await tg.wait_for(lambda s: find(s.sent_to(JANE), "corrected their answer"))
    assert "Here is the manual" in fixed["text"]
