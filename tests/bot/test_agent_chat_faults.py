"""The agent chat's own faults, each detected, told and survived with nothing
lost: no Manage topics right, the bot removed and back, the group migrated,
forum mode switched; and a send Telegram accepted with an answer the client
cannot parse."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from bot.app import App
from bot.db.models import BotState, OutboxItem, Ticket
from bot.sandbox.telegram_server import FakeTelegramServer
from tests.bot.conftest import AGENT_CHAT, ANNA, IVAN, JANE, eventually, find

NEW_AGENT_CHAT = -1001000000999


async def _health(app: App) -> int:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"http://{app.settings.http_listen}/healthz")).status_code


async def test_without_manage_topics_tickets_thread_by_replies_until_the_right_is_back(
        tg: FakeTelegramServer, app: App) -> None:
    tg.set_bot_status(ANNA, AGENT_CHAT, "administrator", can_manage_topics=False)
    tg.user_sends_text(IVAN, IVAN, "Printer is on fire")
    card = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "Printer is on fire"))
    assert card["thread_id"] is None  # in the general topic: threaded by replies
    notice = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "Manage topics"))
    assert notice["thread_id"] is None
    # Agents answer by replying to the card; the customer gets it.
    tg.user_sends_text(ANNA, AGENT_CHAT, "We are on it", reply_to=card["message_id"])
    await tg.wait_for(lambda s: find(s.sent_to(IVAN), "We are on it"))

    tg.set_bot_status(ANNA, AGENT_CHAT, "administrator", can_manage_topics=True)
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "topics again"))
    tg.user_sends_text(JANE, JANE, "Scanner is silent")
    card = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "Scanner is silent"))
    assert card["thread_id"] is not None
    assert sum("Manage topics" in (r["text"] or "") for r in tg.sent_to(AGENT_CHAT)) == 1


async def test_bot_removed_from_the_agent_chat_queues_everything_until_it_is_back(
        tg: FakeTelegramServer, app: App) -> None:
    assert await _health(app) == 200
    tg.set_bot_status(ANNA, AGENT_CHAT, "left")
    await eventually(lambda: _as_async(not app.agent_chat.reachable))
    sent_before = len(tg.sent_to(AGENT_CHAT))
    tg.user_sends_text(IVAN, IVAN, "Nobody hears me")
    tg.user_sends_text(JANE, JANE, "Me neither")
    # Customers are still served: tickets opened, numbers told.
    await tg.wait_for(lambda s: find(s.sent_to(IVAN), "#") and find(s.sent_to(JANE), "#"))
    assert await _health(app) == 503
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"http://{app.settings.http_listen}/metrics")).text
    assert "deskbridge_agent_chat_ok 0.0" in metrics
    assert len(tg.sent_to(AGENT_CHAT)) == sent_before

    tg.add_bot_to_group(ANNA, AGENT_CHAT)
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "Nobody hears me")
                      and find(s.sent_to(AGENT_CHAT), "Me neither"), timeout=20)
    assert await _health(app) == 200
    async with app.sessionmaker() as session:
        dead = await session.scalar(select(func.count()).select_from(OutboxItem)
                                    .where(OutboxItem.status == "dead"))
    assert dead == 0


async def test_group_migrated_to_a_supergroup_is_followed_and_kept(
        tg: FakeTelegramServer, app: App) -> None:
    tg.migrate_chat(AGENT_CHAT, NEW_AGENT_CHAT)
    tg.user_sends_text(IVAN, IVAN, "Where did the group go")
    card = await tg.wait_for(lambda s: find(s.sent_to(NEW_AGENT_CHAT), "Where did the group go"))
    assert card["thread_id"] is not None
    await tg.wait_for(lambda s: find(s.sent_to(NEW_AGENT_CHAT), "AGENT_CHAT_ID=-1001000000999"))
    assert app.agent_chat.chat_id == NEW_AGENT_CHAT
    async with app.sessionmaker() as session:
        state = await session.get(BotState, "agent_chat")
    assert state is not None and state.value["chat_id"] == NEW_AGENT_CHAT
    # Agents in the new group are agents.
    tg.user_sends_text(ANNA, NEW_AGENT_CHAT, "Hello from the new group",
                       thread_id=card["thread_id"])
    await tg.wait_for(lambda s: find(s.sent_to(IVAN), "Hello from the new group"))


async def test_forum_mode_switched_off_is_seen_in_the_next_update(
        tg: FakeTelegramServer, app: App) -> None:
    assert app.agent_chat.forum
    tg.set_forum(AGENT_CHAT, False)
    tg.user_sends_text(ANNA, AGENT_CHAT, "/tickets")
    await eventually(lambda: _as_async(not app.agent_chat.forum))
    tg.user_sends_text(IVAN, IVAN, "No topics any more")
    card = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "No topics any more"))
    assert card["thread_id"] is None
    assert not tg.calls("createForumTopic")


async def test_a_send_accepted_with_an_unreadable_answer_is_not_sent_again(
        tg: FakeTelegramServer, app: App) -> None:
    tg.answer_oddly_next("sendMessage", times=3)
    tg.user_sends_text(IVAN, IVAN, "Odd server")
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "Odd server"))
    await tg.wait_for(lambda s: find(s.sent_to(IVAN), "#1"))
    await eventually(lambda: _ticket(app))  # the card's id was recorded
    await app.outbox.drain(timeout=3)
    assert len([r for r in tg.sent_to(AGENT_CHAT) if "Odd server" in (r["text"] or "")]) == 1
    assert len([r for r in tg.sent_to(IVAN) if "#1" in (r["text"] or "")]) == 1
    async with app.sessionmaker() as session:
        dead = await session.scalar(select(func.count()).select_from(OutboxItem)
                                    .where(OutboxItem.status == "dead"))
    assert dead == 0


async def _ticket(app: App) -> Ticket | None:
    async with app.sessionmaker() as session:
        return await session.scalar(select(Ticket).where(Ticket.tg_card_message_id.is_not(None)))


async def _as_async(value: object) -> object:
    return value
