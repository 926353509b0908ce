"""A surge, through a fake Bot API server that enforces Telegram's limits:
hundreds of customers at once, and an agent chat with a backlog."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.app import App
from bot.db.models import Attachment, Message, OutboxItem, Ticket
from bot.sandbox.telegram_server import FakeTelegramServer
from bot.telegram.limits import Limits, LocalBudget
from tests.bot.conftest import AGENT_CHAT, IVAN, callback_data_of, find

SURGE_CUSTOMERS = 300
FIRST_SURGE_ID = 700_000


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"telegram_group_per_minute": 20}  # Telegram's own


async def _tickets(app: App) -> int:
    async with app.sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(Ticket)) or 0


async def _customer(tg: FakeTelegramServer, user_id: int, lang: str) -> None:
    """/start, press *New request*, describe the problem: as a person would,
    each step once the bot has answered the previous one."""
    tg.user_sends_text(user_id, user_id, "/start")
    menu = await tg.wait_for(lambda s: next(
        (r for r in s.sent_to(user_id) if r.get("reply_markup")), None), timeout=90)
    tg.user_presses(user_id, (user_id, menu["message_id"]),
                    callback_data_of(menu, "New request" if lang == "en" else "Новое"))
    prompt = "Describe your problem" if lang == "en" else "Опишите проблему"
    await tg.wait_for(lambda s: find(s.sent_to(user_id), prompt), timeout=90)
    tg.user_sends_text(user_id, user_id, f"The service is down for me ({user_id})")


async def test_hundreds_of_customers_open_requests_at_once(tg: FakeTelegramServer, app: App
                                                           ) -> None:
    tg.enforce_limits = True
    customers = []
    for n in range(SURGE_CUSTOMERS):
        lang = "ru" if n % 2 else "en"
        tg.add_user(FIRST_SURGE_ID + n, f"Customer {n}", None, lang)
        customers.append((FIRST_SURGE_ID + n, lang))
    await asyncio.gather(*(_customer(tg, user_id, lang) for user_id, lang in customers))
    # Everyone is told the number of their request.
    await tg.wait_for(lambda s: all(
        any("#" in (r["text"] or "") for r in s.sent_to(user_id)) for user_id, _ in customers
    ) or None, timeout=90)
    assert await _tickets(app) == SURGE_CUSTOMERS
    for user_id, _ in customers:
        texts = [r["text"] or "" for r in tg.sent_to(user_id)]
        assert not any("Something went wrong" in t or "Что-то пошло не так" in t for t in texts)
    assert len(tg.calls("answerCallbackQuery")) >= SURGE_CUSTOMERS  # every press answered
    assert tg.limit_429s == 0


async def test_forged_button_presses_get_an_alert_not_a_message(tg: FakeTelegramServer,
                                                                app: App) -> None:
    tg.enforce_limits = True
    tg.user_sends_text(IVAN, IVAN, "/start")
    await tg.wait_for(lambda s: s.sent_to(IVAN))
    before = len(tg.sent_to(IVAN))
    queries = [tg.user_sends_forged_callback(IVAN, IVAN, 1, f"junk:{n}") for n in range(20)]
    await tg.wait_for(lambda s: all(q in s.callback_answers for q in queries) or None)
    assert all(tg.callback_answers[q].get("show_alert") for q in queries)
    await asyncio.sleep(0.5)
    assert len(tg.sent_to(IVAN)) == before  # no chat message about it
    assert tg.limit_429s == 0


async def test_new_tickets_overtake_a_saturated_agent_chat(tg: FakeTelegramServer, app: App
                                                           ) -> None:
    # A backlog: ten conversations whose customers send files (never merged).
    backlog = [FIRST_SURGE_ID + 5000 + n for n in range(10)]
    for n, user_id in enumerate(backlog):
        tg.add_user(user_id, f"Busy {n}", None, "en")
        tg.user_sends_text(user_id, user_id, f"Busy problem {n}")
    await tg.wait_for(lambda s: len(s.calls("createForumTopic")) == 10 or None, timeout=60)
    await tg.wait_for(lambda s: sum(1 for r in s.sent_to(AGENT_CHAT)
                                    if "Busy problem" in (r["text"] or "")) >= 10 or None)
    # From here on, Telegram's real limits: 20 calls a minute to the group.
    shared, app.pacer.budget = app.pacer.budget, LocalBudget(Limits())
    await shared.aclose()  # with TEST_REDIS_URL, the Redis budget's connections
    tg.enforce_limits = True
    for user_id in backlog:
        for k in range(2):
            tg.user_sends_photo(user_id, user_id, caption=None, data=f"img-{user_id}-{k}".encode())
    await asyncio.sleep(8)  # the group is saturated now, 20 files queued
    waits = []
    for n in range(3):
        user_id = FIRST_SURGE_ID + 6000 + n
        tg.add_user(user_id, f"New {n}", None, "en")
        started = time.monotonic()
        tg.user_sends_text(user_id, user_id, f"Brand new problem {n}")
        await tg.wait_for(lambda s, n=n: find(s.sent_to(AGENT_CHAT), f"Brand new problem {n}"),
                          timeout=30)
        waits.append(time.monotonic() - started)
    topics = [c["name"] for c in tg.calls("createForumTopic")]
    assert sum("Brand new problem" in name for name in topics) == 3
    assert max(waits) <= 10.0, waits  # topic and card, ahead of the 20 files
    assert tg.limit_429s == 0
    # The backlog waits its turn (at 20 a minute it takes a minute): nothing is dropped.
    async with app.sessionmaker() as session:
        statuses = list(await session.scalars(
            select(OutboxItem.status).join(Message, Message.id == OutboxItem.payload["message_id"]
                                           .as_integer())
            .join(Attachment, Attachment.message_id == Message.id)
            .where(OutboxItem.kind == "tg.mirror")))
    assert len(statuses) == 20 and "dead" not in statuses
