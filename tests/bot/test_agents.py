"""The agent supergroup: cards, buttons, commands, threading without topics."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.app import App
from bot.db.models import Agent, Ticket
from bot.sandbox.telegram_server import FakeTelegramServer
from bridges.local.models import LocalMessage, LocalTicket
from tests.bot.conftest import (
    AGENT_CHAT,
    ANNA,
    BORIS,
    IVAN,
    JANE,
    callback_data_of,
    eventually,
    find,
)
from tests.bot.test_flow import open_ticket


async def ticket(app: App) -> Ticket:
    async with app.sessionmaker() as session:
        found = await session.scalar(select(Ticket).order_by(Ticket.id.desc()))
        assert found is not None
        return found


async def desk_ticket(app: App) -> LocalTicket:
    async with app.sessionmaker() as session:
        found = await session.scalar(select(LocalTicket).order_by(LocalTicket.id.desc()))
        assert found is not None
        return found


async def _desk_field(app: App, name: str, expected: str) -> bool:
    """The desk is told after the card changes: its outbox row may still be on its way."""
    return getattr(await desk_ticket(app), name) == expected


def card_now(tg: FakeTelegramServer, card: dict) -> dict:
    return next(r for r in tg.sent_to(AGENT_CHAT) if r["message_id"] == card["message_id"])


async def test_card_buttons_take_priority_note(tg: FakeTelegramServer, app: App) -> None:
    topic, card = await open_ticket(tg, JANE, "VPN is down")
    tg.user_presses(BORIS, (AGENT_CHAT, card["message_id"]), callback_data_of(card, "Take"))
    await tg.wait_for(lambda s: "Assignee: Boris" in card_now(s, card)["text"])
    await eventually(lambda: _desk_field(app, "assignee_name", "Boris"))

    tg.user_presses(BORIS, (AGENT_CHAT, card["message_id"]), callback_data_of(card, "Priority"))
    await tg.wait_for(lambda s: "critical" in str(card_now(s, card)["reply_markup"]))
    tg.user_presses(BORIS, (AGENT_CHAT, card["message_id"]),
                    callback_data_of(card_now(tg, card), "critical"))
    await tg.wait_for(lambda s: "priority: critical" in card_now(s, card)["text"])
    await eventually(lambda: _desk_field(app, "priority", "critical"))

    tg.user_presses(BORIS, (AGENT_CHAT, card["message_id"]),
                    callback_data_of(card_now(tg, card), "Note"))
    tg.user_sends_text(BORIS, AGENT_CHAT, "Checked the router: fine", thread_id=topic)
    async def note_stored() -> bool:
        async with app.sessionmaker() as session:
            return await session.scalar(select(LocalMessage.author_kind).where(
                LocalMessage.text == "Checked the router: fine")) == "note"

    await eventually(note_stored)
    # The next message is a reply again.
    tg.user_sends_text(BORIS, AGENT_CHAT, "Please reconnect", thread_id=topic)
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "Please reconnect"))
    assert not find(tg.sent_to(JANE), "router")


async def test_assign_and_queue_and_link(tg: FakeTelegramServer, app: App) -> None:
    topic, _ = await open_ticket(tg, IVAN, "Нет доступа к почте")
    tg.user_sends_text(BORIS, AGENT_CHAT, "/help")  # Boris is now known to the bot
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "/take"))
    tg.user_sends_text(ANNA, AGENT_CHAT, "/assign @boris", thread_id=topic)
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "Assigned to Boris (by Anna)"))
    tg.user_sends_text(ANNA, AGENT_CHAT, "/assign @nobody_here", thread_id=topic)
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "do not know an agent"))

    tg.user_sends_text(ANNA, AGENT_CHAT, "/tickets")
    queue = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "Open requests: 1"))
    assert "Нет доступа к почте" in queue["text"] and "Boris" in queue["text"]

    tg.user_sends_text(ANNA, ANNA, "/link anna.k")
    await tg.wait_for(lambda s: find(s.sent_to(ANNA), "anna.k"))
    async with app.sessionmaker() as session:
        agent = await session.scalar(select(Agent).where(Agent.tg_user_id == ANNA))
        assert agent is not None and agent.remote_login == "anna.k"
    # Replies now carry the linked desk account.
    tg.user_sends_text(ANNA, AGENT_CHAT, "Пароль сброшен", thread_id=topic)

    async def author() -> str | None:
        async with app.sessionmaker() as session:
            return await session.scalar(select(LocalMessage.author_name).where(
                LocalMessage.text == "Пароль сброшен"))

    assert await eventually(author) == "anna.k"


async def test_commands_outside_a_ticket_explain_themselves(tg: FakeTelegramServer, app: App
                                                             ) -> None:
    tg.user_sends_text(ANNA, AGENT_CHAT, "/close")
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "inside a ticket's topic"))
    tg.user_sends_text(ANNA, AGENT_CHAT, "/priority urgent-ish")
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "Usage: /priority"))
    # Agents chatting in the general topic is not a reply to anyone.
    tg.user_sends_text(ANNA, AGENT_CHAT, "coffee?")
    tg.user_sends_text(BORIS, AGENT_CHAT, "/stats")
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "Open: 0"))
    async with app.sessionmaker() as session:
        assert await session.scalar(select(Ticket.id)) is None


async def test_allowlist_refuses_other_members(tg: FakeTelegramServer, migrated_url: str,
                                               redis_url: str | None) -> None:
    from tests.bot.conftest import make_settings, running

    settings = make_settings(tg, migrated_url, redis_url, agent_allowlist=[ANNA])
    async with running(settings):
        topic, card = await open_ticket(tg, JANE, "Allow-list check")
        tg.user_sends_text(BORIS, AGENT_CHAT, "/take", thread_id=topic)
        await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "agents only"))
        query = tg.user_presses(BORIS, (AGENT_CHAT, card["message_id"]),
                                callback_data_of(card, "Close"))
        await tg.wait_for(lambda s: query in s.callback_answers)
        assert "agents only" in tg.callback_answers[query]["text"]
        tg.user_sends_text(BORIS, AGENT_CHAT, "Boris tries to answer", thread_id=topic)
        tg.user_sends_text(ANNA, AGENT_CHAT, "Anna answers", thread_id=topic)
        await tg.wait_for(lambda s: find(s.sent_to(JANE), "Anna answers"))
        assert not find(tg.sent_to(JANE), "Boris tries")


@pytest.mark.parametrize("forum", [False])
async def test_without_topics_threads_by_reply(tg: FakeTelegramServer, app: App) -> None:
    assert not app.agent_chat.forum
    tg.user_sends_text(JANE, JANE, "Printer jam\nPage 3 is stuck")
    card = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "Printer jam"))
    assert card["thread_id"] is None and tg.calls("createForumTopic") == []
    tg.user_sends_text(JANE, JANE, "Also page 4")
    mirror = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "Also page 4"))
    assert mirror["reply_to"] == card["message_id"]
    assert mirror["text"].startswith("#1")
    # An agent answers by replying to any of the ticket's messages.
    tg.user_sends_text(ANNA, AGENT_CHAT, "Open the back cover", reply_to=mirror["message_id"])
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "Open the back cover"))
    tg.user_sends_text(ANNA, AGENT_CHAT, "/close", reply_to=card["message_id"])
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "is closed"))
    # A message that replies to nothing of ours is not a reply to a customer.
    tg.user_sends_text(ANNA, AGENT_CHAT, "lunch at 1?")
    tg.user_sends_text(ANNA, AGENT_CHAT, "/stats")
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "Open: 0"))
    assert not find(tg.sent_to(JANE), "lunch")


async def test_password_in_the_group_is_deleted_and_refer_needs_a_capable_desk(
    tg: FakeTelegramServer, app: App
) -> None:
    topic, _ = await open_ticket(tg, JANE, "Refer me")
    sent = tg.user_sends_text(ANNA, AGENT_CHAT, "/link anna s3cret-pass", thread_id=topic)
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "Never send a password"))
    assert any(c["message_id"] in (sent["message_id"], str(sent["message_id"]))
               for c in tg.calls("deleteMessage"))
    async with app.sessionmaker() as session:
        agent = await session.scalar(select(Agent).where(Agent.tg_user_id == ANNA))
        assert agent is None or agent.remote_login is None
    tg.user_sends_text(ANNA, AGENT_CHAT, "/refer Billing", thread_id=topic)
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "does not support"))
