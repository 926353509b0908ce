"""Delivery through faults: 429, 403, lost topics, pacing and merging, dead
letters, and replies typed in the helpdesk itself."""

from __future__ import annotations

import os
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.__main__ import main
from bot.app import App
from bot.db.models import Customer, OutboxItem
from bot.sandbox.telegram_server import FakeTelegramServer
from bridges.base import AgentIdentity, TicketStatus, TicketUpdate
from tests.bot.conftest import (
    AGENT_CHAT,
    ANNA,
    IVAN,
    JANE,
    callback_data_of,
    eventually,
    find,
    make_settings,
    running,
)
from tests.bot.test_flow import open_ticket


def count(tg: FakeTelegramServer, chat_id: int, needle: str, thread: Any = ...) -> int:
    return sum(1 for r in tg.sent_to(chat_id, thread) if needle in (r["text"] or ""))


async def test_429_waits_retry_after_and_sends_once(tg: FakeTelegramServer, app: App) -> None:
    topic, _ = await open_ticket(tg, JANE, "Rate limits")
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "Request #1 is open"))
    tg.fail_next("sendMessage", 429, retry_after=1, times=2, chat_id=JANE)
    tg.user_sends_text(ANNA, AGENT_CHAT, "Answer after a 429", thread_id=topic)
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "Answer after a 429"), timeout=15)
    assert count(tg, JANE, "Answer after a 429") == 1
    attempts = [c for c in tg.calls("sendMessage") if "Answer after" in str(c.get("text"))]
    assert len(attempts) == 3  # two 429s, then the delivery


async def test_customer_who_blocked_the_bot_is_shown_to_agents(tg: FakeTelegramServer,
                                                                app: App) -> None:
    topic, card = await open_ticket(tg, JANE, "Then I leave")
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "Request #1 is open"))
    tg.block_user(JANE)
    tg.user_sends_text(ANNA, AGENT_CHAT, "Are you there?", thread_id=topic)
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "blocked the bot"))
    await tg.wait_for(lambda s: "blocked the bot" in next(
        r for r in s.sent_to(AGENT_CHAT) if r["message_id"] == card["message_id"])["text"])
    async with app.sessionmaker() as session:
        customer = await session.scalar(select(Customer).where(Customer.tg_user_id == JANE))
        assert customer is not None and customer.blocked_at is not None
        dead = list(await session.scalars(select(OutboxItem).where(
            OutboxItem.status == "dead")))
    assert [row.kind for row in dead] == ["tg.customer_message"]  # kept for replay


async def test_blocking_update_is_shown_too(tg: FakeTelegramServer, app: App) -> None:
    topic, _ = await open_ticket(tg, IVAN, "Блокирую")
    tg.my_chat_member(IVAN, "kicked")
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "blocked the bot"))
    tg.my_chat_member(IVAN, "member")
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "unblocked"))


async def test_deleted_topic_is_recreated(tg: FakeTelegramServer, app: App) -> None:
    topic, _ = await open_ticket(tg, JANE, "Topic goes away")
    tg.delete_topic(AGENT_CHAT, topic)
    tg.user_sends_text(JANE, JANE, "Still there?")
    mirrored = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "Still there?"))
    assert mirrored["thread_id"] != topic
    assert len(tg.calls("createForumTopic")) == 2
    assert find(tg.sent_to(AGENT_CHAT, mirrored["thread_id"]), "🎫 #1 Topic goes away")


async def test_closed_topic_is_reopened(tg: FakeTelegramServer, app: App) -> None:
    topic, _ = await open_ticket(tg, JANE, "Topic closed by an admin")
    tg.close_topic(AGENT_CHAT, topic)
    tg.user_sends_text(JANE, JANE, "Hello again")
    mirrored = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "Hello again"))
    assert mirrored["thread_id"] == topic
    assert tg.calls("reopenForumTopic")


@pytest.mark.parametrize("settings_overrides", [{"telegram_group_per_minute": 20}])
async def test_busy_topic_merges_pending_texts(tg: FakeTelegramServer, app: App) -> None:
    """With the real 20/min group budget, a burst is merged, not queued for minutes."""
    tg.enforce_limits = True  # the fake answers 429 if the bot goes over Telegram's limits
    topic, _ = await open_ticket(tg, JANE, "Burst")
    lines = [f"line {i:02d}" for i in range(15)]
    for line in lines:
        tg.user_sends_text(JANE, JANE, line)
    await tg.wait_for(lambda s: all(find(s.sent_to(AGENT_CHAT, topic), line)
                                    for line in lines), timeout=30)
    mirrors = [r for r in tg.sent_to(AGENT_CHAT, topic) if "line " in (r["text"] or "")]
    assert len(mirrors) < len(lines)
    seen = [line for r in mirrors for line in lines if line in r["text"]]
    assert seen == lines  # each once, in order
    assert tg.limit_429s == 0


async def test_dead_letters_are_listed_and_replayed(tg: FakeTelegramServer, migrated_url: str,
                                                    redis_url: str | None, capsys,
                                                    monkeypatch) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tg, migrated_url, redis_url, outbox_max_attempts=1)
    async with running(settings) as app:
        topic, _ = await open_ticket(tg, JANE, "Dead letters")
        await tg.wait_for(lambda s: find(s.sent_to(JANE), "Request #1 is open"))
        tg.fail_next("sendMessage", 400, "Bad Request: chat is deactivated", chat_id=JANE)
        tg.user_sends_text(ANNA, AGENT_CHAT, "This one fails once", thread_id=topic)
        notice = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic),
                                                  "Could not deliver"))
        # In words, naming the ticket and what was being done; no internal code.
        assert notice["text"] == ("⚠️ Could not deliver the reply to the customer for request "
                                  "#1. Telegram refused it.")
        assert "tg.customer_message" not in notice["text"]

        monkeypatch.setenv("DATABASE_URL", migrated_url)
        import asyncio

        await asyncio.to_thread(main, ["outbox", "list"])
        listed = capsys.readouterr().out.splitlines()
        assert listed[0].split() == ["id", "ticket", "kind", "attempts", "since", "why"]
        assert "#1" in listed[1] and "tg.customer_message" in listed[1]
        row_id = int(listed[1].split()[0])
        await asyncio.to_thread(main, ["outbox", "show", str(row_id)])
        shown = capsys.readouterr().out
        assert "deactivated" in shown and "message_id" in shown
        # An agent presses Retry on the notice: delivered once, the buttons go.
        tg.user_presses(ANNA, (AGENT_CHAT, notice["message_id"]), callback_data_of(notice, "Retry"))
        await tg.wait_for(lambda s: find(s.sent_to(JANE), "This one fails once"))
        assert count(tg, JANE, "This one fails once") == 1
        await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "Could not deliver")
                          .get("reply_markup") is None)

        # Another one fails: /failed lists it; Discard drops it for good.
        tg.fail_next("sendMessage", 400, "Bad Request: chat is deactivated", chat_id=JANE)
        tg.user_sends_text(ANNA, AGENT_CHAT, "This one is dropped", thread_id=topic)
        await tg.wait_for(lambda s: len([r for r in s.sent_to(AGENT_CHAT, topic)
                                         if "Could not deliver" in (r["text"] or "")]) == 2)
        tg.user_sends_text(ANNA, AGENT_CHAT, "/failed")
        listing = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "Failed deliveries: 1"))
        tg.user_presses(ANNA, (AGENT_CHAT, listing["message_id"]),
                        callback_data_of(listing, "Discard"))
        await eventually(lambda: _dead_count(app), lambda n: n == 0)
        await asyncio.to_thread(main, ["outbox", "list"])
        assert "no dead letters" in capsys.readouterr().out
        assert count(tg, JANE, "This one is dropped") == 0
    assert os.environ["DATABASE_URL"] == migrated_url


async def _dead_count(app: App) -> int:
    async with app.sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(OutboxItem)
                                    .where(OutboxItem.status == "dead")) or 0


async def test_replies_typed_in_the_helpdesk_reach_both_sides(tg: FakeTelegramServer,
                                                               app: App) -> None:
    topic, _ = await open_ticket(tg, IVAN, "Ответ из хелпдеска")
    async with app.sessionmaker() as session:
        from bot.db.models import Ticket

        remote_id = await session.scalar(select(Ticket.remote_ticket_id))
    assert remote_id is not None
    desk = app.bridge
    await desk.post_agent_reply(remote_id, AgentIdentity("desk", "Olga (helpdesk)"),
                                "Ответ, набранный в хелпдеске")
    await desk.post_note(remote_id, AgentIdentity("desk", "Olga (helpdesk)"), "Заметка в хелпдеске")
    reply = await tg.wait_for(lambda s: find(s.sent_to(IVAN), "набранный в хелпдеске"))
    assert "Olga" in reply["text"]
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "набранный в хелпдеске"))
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "Заметка в хелпдеске"))
    assert not find(tg.sent_to(IVAN), "Заметка")

    await desk.update_ticket(remote_id, TicketUpdate(status=TicketStatus.CLOSED))
    await tg.wait_for(lambda s: find(s.sent_to(IVAN), "закрыто"))
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "Closed in the helpdesk"))

    # The bot's own messages come back through the poll and are not delivered twice.
    tg.user_sends_text(ANNA, AGENT_CHAT, "/reopen", thread_id=topic)
    tg.user_sends_text(ANNA, AGENT_CHAT, "Ответ из телеграма", thread_id=topic)
    await tg.wait_for(lambda s: find(s.sent_to(IVAN), "Ответ из телеграма"))
    for _ in range(3):  # several poll cycles
        await app.poll_provider()
    await app.outbox.drain(timeout=3)
    assert count(tg, IVAN, "Ответ из телеграма") == 1
    assert count(tg, IVAN, "набранный в хелпдеске") == 1
    assert count(tg, AGENT_CHAT, "Ответ из телеграма") == 0  # the agent's own message is there
