"""The whole customer ⇄ agent flow through the fake Bot API server."""

from __future__ import annotations

from sqlalchemy import select

from bot.app import App
from bot.db.models import Customer, Ticket
from bot.sandbox.telegram_server import FakeTelegramServer
from bridges.local.models import LocalMessage
from tests.bot.conftest import (
    AGENT_CHAT,
    ANNA,
    IVAN,
    JANE,
    OUTSIDER,
    callback_data_of,
    eventually,
    find,
    texts,
)


async def open_ticket(tg: FakeTelegramServer, customer: int, text: str) -> tuple[int, dict]:
    """The customer writes; returns the new topic's id and the ticket card."""
    tg.user_sends_text(customer, customer, text)
    subject = text.splitlines()[0]
    card = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), f"{subject}"))
    assert card["thread_id"] is not None
    return card["thread_id"], card


async def test_full_flow(tg: FakeTelegramServer, app: App) -> None:
    # The customer opens a ticket: a topic named after it and a card appear.
    tg.user_sends_text(IVAN, IVAN, "/start")
    await tg.wait_for(lambda s: find(s.sent_to(IVAN), "Здравствуйте"))
    topic, card = await open_ticket(tg, IVAN, "Принтер не печатает\nОшибка 42 с утра")
    created = tg.calls("createForumTopic")
    assert [c["name"] for c in created] == ["🟢 #1 Принтер не печатает — Ivan"]
    assert "Ошибка 42 с утра" in card["text"]
    assert "Ivan (@ivan)" in card["text"]
    notice = await tg.wait_for(lambda s: find(s.sent_to(IVAN), "#1"))
    assert "создано" in notice["text"]  # in the customer's language

    # The agent answers in the topic: the customer gets it, named.
    tg.user_sends_text(ANNA, AGENT_CHAT, "Перезагрузите его, пожалуйста", thread_id=topic)
    reply = await tg.wait_for(lambda s: find(s.sent_to(IVAN), "Перезагрузите"))
    assert "Anna" in reply["text"] and "#1" in reply["text"]

    # The customer replies: it appears in the topic.
    tg.user_sends_text(IVAN, IVAN, "Помогло, спасибо!")
    mirrored = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "Помогло"))
    assert "Ivan" in mirrored["text"]

    # A note stays internal.
    tg.user_sends_text(ANNA, AGENT_CHAT, "# VIP-клиент, не забыть", thread_id=topic)
    tg.user_sends_text(ANNA, AGENT_CHAT, "/note проверить картридж", thread_id=topic)
    async def notes() -> list[str]:
        async with app.sessionmaker() as session:
            rows = await session.scalars(select(LocalMessage.text).where(
                LocalMessage.author_kind == "note"))
            return list(rows)

    found = await eventually(notes, lambda found: len(found) == 2)
    assert found == ["VIP-клиент, не забыть", "проверить картридж"]
    assert not find(tg.sent_to(IVAN), "VIP")
    assert not find(tg.sent_to(IVAN), "картридж")

    # Close from the topic: the customer is told and asked to rate.
    tg.user_sends_text(ANNA, AGENT_CHAT, "/close", thread_id=topic)
    closed = await tg.wait_for(lambda s: find(s.sent_to(IVAN), "закрыто"))
    card = await tg.wait_for(lambda s: next(
        (r for r in s.sent_to(AGENT_CHAT, topic) if r["message_id"] == card["message_id"]
         and "Reopen" in str(r["reply_markup"])), None))
    tg.user_presses(IVAN, (IVAN, closed["message_id"]), callback_data_of(closed, "5"))
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "⭐⭐⭐⭐⭐"))
    async with app.sessionmaker() as session:
        ticket = await session.scalar(select(Ticket))
        assert ticket is not None
        assert (ticket.status, ticket.rating) == ("closed", 5)


async def test_non_members_are_refused(tg: FakeTelegramServer, app: App) -> None:
    tg.user_sends_text(OUTSIDER, OUTSIDER, "/take")
    refusal = await tg.wait_for(lambda s: find(s.sent_to(OUTSIDER), "agents only"))
    assert refusal
    tg.user_sends_text(OUTSIDER, OUTSIDER, "/stats")
    await tg.wait_for(lambda s: len(s.sent_to(OUTSIDER)) == 2)
    assert all("agents only" in t for t in texts(tg.sent_to(OUTSIDER)))
    # A member's own stats work in a private chat.
    tg.user_sends_text(ANNA, ANNA, "/stats")
    await tg.wait_for(lambda s: find(s.sent_to(ANNA), "Открыто"))


async def test_forged_agent_callback_is_refused(tg: FakeTelegramServer, app: App) -> None:
    _topic, card = await open_ticket(tg, JANE, "Cannot log in")
    # A forged "close" from someone outside the agent chat, sent as a raw update.
    query_id = tg.user_sends_forged_callback(
        OUTSIDER, OUTSIDER, 1, callback_data_of(card, "Close"))
    await tg.wait_for(lambda s: query_id in s.callback_answers)
    assert "agents only" in tg.callback_answers[query_id]["text"]
    async with app.sessionmaker() as session:
        assert (await session.scalar(select(Ticket.status))) == "open"


async def test_customer_cannot_touch_another_customers_ticket(
    tg: FakeTelegramServer, app: App
) -> None:
    await open_ticket(tg, JANE, "Jane's private problem")
    tg.user_sends_text(IVAN, IVAN, "/tickets")
    listing = await tg.wait_for(lambda s: find(s.sent_to(IVAN), "нет обращений"))
    # Forge "open ticket 1" and "close ticket 1" from Ivan's chat.
    for data in ("c:open:1:0", "c:close:1:0", "c:rate:1:5", "c:place:1:1"):
        query_id = tg.user_sends_forged_callback(IVAN, IVAN, listing["message_id"], data)
        await tg.wait_for(lambda s, q=query_id: q in s.callback_answers)
        assert "не найдено" in tg.callback_answers[query_id]["text"], data
    assert not find(tg.sent_to(IVAN), "private problem")
    async with app.sessionmaker() as session:
        assert (await session.scalar(select(Ticket.status))) == "open"


async def test_customer_language_can_change(tg: FakeTelegramServer, app: App) -> None:
    tg.user_sends_text(IVAN, IVAN, "/language")
    await tg.wait_for(lambda s: find(s.sent_to(IVAN), "Language: English"))
    async with app.sessionmaker() as session:
        assert (await session.scalar(select(Customer.language))) == "en"
