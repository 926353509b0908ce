"""Ratings after close: stars, an optional comment, shown to the agents and
written to the helpdesk as notes."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from bot.app import App
from bot.db.models import Ticket
from bot.sandbox.telegram_server import FakeTelegramServer
from bridges.local.models import LocalMessage
from tests.bot.conftest import AGENT_CHAT, ANNA, JANE, callback_data_of, eventually, find
from tests.bot.test_agents import card_now
from tests.bot.test_flow import open_ticket


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # The customer's chat is paced at 1 message/s by default; these tests send many.
    return {"telegram_chat_interval": 0.05, "telegram_group_per_minute": 1200}

async def close_and_get_stars(tg: FakeTelegramServer, topic: int) -> dict:
    before = len(tg.sent_to(JANE))
    tg.user_sends_text(ANNA, AGENT_CHAT, "/close", thread_id=topic)
    return await tg.wait_for(lambda s: next(
        (r for r in s.sent_to(JANE)[before:] if "Please rate" in (r["text"] or "")), None))


def press_stars(tg: FakeTelegramServer, closed: dict, stars: int) -> str:
    data = next(button["callback_data"] for row in closed["reply_markup"]["inline_keyboard"]
                for button in row if button["callback_data"].startswith("c:rate:")
                and button["callback_data"].endswith(f":{stars}"))
    return tg.user_presses(JANE, (JANE, closed["message_id"]), data)


async def desk_notes(app: App) -> list[str]:
    async with app.sessionmaker() as session:
        return list(await session.scalars(select(LocalMessage.text).where(
            LocalMessage.author_kind == "note").order_by(LocalMessage.id)))


async def test_stars_then_a_comment(tg: FakeTelegramServer, app: App) -> None:
    topic, card = await open_ticket(tg, JANE, "Cannot print")
    closed = await close_and_get_stars(tg, topic)
    query = press_stars(tg, closed, 4)
    await tg.wait_for(lambda s: query in s.callback_answers)
    assert tg.callback_answers[query]["text"] == "Thank you for your rating!"
    prompt = await tg.wait_for(lambda s: find(s.sent_to(JANE), "tell us more"))
    assert "Skip" in str(prompt["reply_markup"])
    stars_now = next(r for r in tg.sent_to(JANE) if r["message_id"] == closed["message_id"])
    assert not stars_now["reply_markup"]  # the stars are gone
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "rated the help: ⭐⭐⭐⭐"))

    tg.user_sends_text(JANE, JANE, "Quick, but the first answer missed the point")
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "passed your comment on"))
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "comment on the rating"))
    await tg.wait_for(lambda s: "missed the point" in card_now(s, card)["text"])
    assert "Rating: ⭐⭐⭐⭐" in card_now(tg, card)["text"]
    async with app.sessionmaker() as session:
        ticket = await session.scalar(select(Ticket))
        assert ticket is not None and ticket.rating == 4 and ticket.rated_at is not None
        assert ticket.rating_comment == "Quick, but the first answer missed the point"
        # The comment is not a message to support: no new request was opened.
        assert await session.scalar(select(func.count()).select_from(Ticket)) == 1

    async def both_notes() -> list[str]:
        notes = await desk_notes(app)
        return notes if len(notes) == 2 else []

    notes = await eventually(both_notes)
    assert notes[0] == "The customer rated the help: ⭐⭐⭐⭐ (4 of 5)."
    assert "missed the point" in notes[1]


async def test_skipping_the_comment(tg: FakeTelegramServer, app: App) -> None:
    topic, _ = await open_ticket(tg, JANE, "Slow laptop")
    closed = await close_and_get_stars(tg, topic)
    press_stars(tg, closed, 5)
    prompt = await tg.wait_for(lambda s: find(s.sent_to(JANE), "tell us more"))
    tg.user_presses(JANE, (JANE, prompt["message_id"]), callback_data_of(prompt, "Skip"))
    await tg.wait_for(lambda s: any(r["text"] == "Thank you!" for r in s.sent_to(JANE)))
    # The next message is a message to support again: a new request.
    tg.user_sends_text(JANE, JANE, "Another problem: no sound")
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "Another problem"))
    async with app.sessionmaker() as session:
        first = await session.scalar(select(Ticket).order_by(Ticket.id))
        assert first is not None and first.rating == 5 and first.rating_comment is None


async def test_a_command_ends_the_comment_prompt(tg: FakeTelegramServer, app: App) -> None:
    topic, _ = await open_ticket(tg, JANE, "Wi-Fi drops")
    closed = await close_and_get_stars(tg, topic)
    press_stars(tg, closed, 3)
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "tell us more"))
    tg.user_sends_text(JANE, JANE, "/tickets")
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "Your requests"))
    tg.user_sends_text(JANE, JANE, "New: the mouse is broken")
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "the mouse is broken"))
    async with app.sessionmaker() as session:
        assert await session.scalar(select(Ticket.rating_comment)) is None


async def test_only_closed_tickets_are_rated(tg: FakeTelegramServer, app: App) -> None:
    await open_ticket(tg, JANE, "Still open")
    listing_query = tg.user_sends_forged_callback(JANE, JANE, 1, "c:rate:1:5")
    await tg.wait_for(lambda s: listing_query in s.callback_answers)
    assert "once it is closed" in tg.callback_answers[listing_query]["text"]
    async with app.sessionmaker() as session:
        assert await session.scalar(select(Ticket.rating)) is None
