"""The customer's private chat: files, albums, several tickets, my requests."""

from __future__ import annotations

from sqlalchemy import func, select

from bot.app import App
from bot.db.models import Attachment, Message, Ticket
from bot.sandbox.telegram_server import FakeTelegramServer
from bridges.local.models import LocalMessage
from tests.bot.conftest import AGENT_CHAT, ANNA, IVAN, JANE, callback_data_of, find
from tests.bot.test_flow import open_ticket


async def count(app: App, model: type, *where: object) -> int:
    async with app.sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where)) or 0


async def test_album_becomes_one_message_with_all_files(tg: FakeTelegramServer, app: App
                                                         ) -> None:
    topic, _ = await open_ticket(tg, JANE, "Screenshots of the error")
    tg.user_sends_album(JANE, JANE, [("photo", b"png-1"), ("photo", b"png-2"),
                                     ("document", b"%PDF", "log.pdf")], caption="Here they are")
    files = await tg.wait_for(lambda s: [r for r in s.sent_to(AGENT_CHAT, topic)
                                          if r["media_type"]] if len(
        [r for r in s.sent_to(AGENT_CHAT, topic) if r["media_type"]]) == 3 else None)
    assert [f["media_type"] for f in files] == ["photo", "photo", "document"]
    assert find(tg.sent_to(AGENT_CHAT, topic), "Here they are")
    # One message, three files, at the bot and at the desk.
    assert await count(app, Message, Message.text == "Here they are") == 1
    assert await count(app, Attachment) == 3
    async with app.sessionmaker() as session:
        desk = await session.scalar(select(LocalMessage).where(
            LocalMessage.text == "Here they are"))
    assert desk is not None and len(desk.attachments) == 3


async def test_photo_opens_a_ticket_and_reaches_the_topic(tg: FakeTelegramServer, app: App
                                                           ) -> None:
    tg.user_sends_photo(IVAN, IVAN, caption="Вот так выглядит ошибка", data=b"jpeg")
    card = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "Вот так выглядит"))
    photo = await tg.wait_for(lambda s: next(
        (r for r in s.sent_to(AGENT_CHAT, card["thread_id"]) if r["media_type"] == "photo"),
        None))
    assert photo["file_id"]
    # The agent's file goes back to the customer.
    tg.user_sends_document(ANNA, AGENT_CHAT, file_name="fix.txt", data=b"do this",
                           thread_id=card["thread_id"])
    doc = await tg.wait_for(lambda s: next(
        (r for r in s.sent_to(IVAN) if r["media_type"] == "document"), None))
    assert doc["file_name"] == "fix.txt"


async def test_several_open_tickets_the_customer_chooses(tg: FakeTelegramServer, app: App
                                                          ) -> None:
    topic_one, _ = await open_ticket(tg, IVAN, "Первая проблема")
    tg.user_sends_text(IVAN, IVAN, "/new")
    await tg.wait_for(lambda s: find(s.sent_to(IVAN), "Опишите проблему"))
    topic_two, _ = await open_ticket(tg, IVAN, "Вторая проблема")
    assert topic_one != topic_two

    # The second ticket is selected now: a plain message goes there.
    tg.user_sends_text(IVAN, IVAN, "к второй")
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic_two), "к второй"))

    # A reply to the first ticket's notification selects the first ticket.
    first_notice = await tg.wait_for(lambda s: find(s.sent_to(IVAN), "#1"))
    tg.user_sends_text(IVAN, IVAN, "к первой", reply_to=first_notice["message_id"])
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic_one), "к первой"))

    # With no selection, the bot asks; the message waits as a draft.
    async with app.sessionmaker.begin() as session:
        from bot.db.models import Customer

        customer = await session.scalar(select(Customer).where(Customer.tg_user_id == IVAN))
        assert customer is not None
        customer.selected_ticket_id = None
    tg.user_sends_text(IVAN, IVAN, "куда это?")
    question = await tg.wait_for(lambda s: find(s.sent_to(IVAN), "несколько открытых"))
    tg.user_presses(IVAN, (IVAN, question["message_id"]), callback_data_of(question, "#2"))
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic_two), "куда это?"))
    assert not find(tg.sent_to(AGENT_CHAT, topic_one), "куда это?")


async def test_reply_to_a_closed_ticket_is_kept_and_placed(tg: FakeTelegramServer, app: App
                                                            ) -> None:
    topic, _ = await open_ticket(tg, JANE, "Old issue")
    tg.user_sends_text(ANNA, AGENT_CHAT, "/close", thread_id=topic)
    closed = await tg.wait_for(lambda s: find(s.sent_to(JANE), "is closed"))
    tg.user_sends_text(JANE, JANE, "It is back!", reply_to=closed["message_id"])
    question = await tg.wait_for(lambda s: find(s.sent_to(JANE), "already closed"))
    tg.user_presses(JANE, (JANE, question["message_id"]),
                    callback_data_of(question, "new request"))
    card = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "#2 It is back!"))
    assert card["thread_id"] != topic
    assert await count(app, Ticket) == 2


async def test_my_requests_history_close_and_reopen(tg: FakeTelegramServer, app: App) -> None:
    topic, _ = await open_ticket(tg, JANE, "Billing question")
    tg.user_sends_text(ANNA, AGENT_CHAT, "Your invoice is fixed", thread_id=topic)
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "invoice is fixed"))
    tg.user_sends_text(JANE, JANE, "/tickets")
    listing = await tg.wait_for(lambda s: find(s.sent_to(JANE), "Your requests"))
    tg.user_presses(JANE, (JANE, listing["message_id"]),
                    callback_data_of(listing, "Billing question"))
    view = await tg.wait_for(lambda s: find(s.sent_to(JANE), "Status: "))
    assert "invoice is fixed" in view["text"] and "Billing question" in view["text"]
    tg.user_presses(JANE, (JANE, view["message_id"]), callback_data_of(view, "Close"))
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "customer closed"))
    view = await tg.wait_for(lambda s: find(s.sent_to(JANE), "Status: closed"))
    tg.user_presses(JANE, (JANE, view["message_id"]), callback_data_of(view, "Reopen"))
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "customer reopened"))
    async with app.sessionmaker() as session:
        assert await session.scalar(select(Ticket.status)) == "open"


async def test_unsupported_content_gets_a_polite_answer(tg: FakeTelegramServer, app: App
                                                         ) -> None:
    tg.user_sends(IVAN, IVAN, sticker={
        "file_id": "s1", "file_unique_id": "u1", "type": "regular", "width": 512,
        "height": 512, "is_animated": False, "is_video": False})
    tg.user_sends(JANE, JANE, location={"latitude": 55.75, "longitude": 37.62})
    await tg.wait_for(lambda s: find(s.sent_to(IVAN), "могу передать только"))
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "can only pass on"))
    assert await count(app, Ticket) == 0


async def test_long_text_is_split_for_the_agents(tg: FakeTelegramServer, app: App) -> None:
    topic, _ = await open_ticket(tg, JANE, "Log follows")
    long_text = "\n".join(f"line {i:04d} " + "x" * 60 for i in range(100))  # ~7,000 chars
    tg.user_sends_text(JANE, JANE, long_text)
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "line 0099"))
    parts = [r["text"] for r in tg.sent_to(AGENT_CHAT, topic) if "line 0" in (r["text"] or "")]
    assert len(parts) == 2
    joined = "\n".join(parts)
    assert all(f"line {i:04d}" in joined for i in range(100))
