"""The demo page's API and event stream over real HTTP, with the real bot on the
sandbox Telegram: what the page's JavaScript relies on."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import KeyboardButton, ReplyKeyboardMarkup
from sqlalchemy import select

from bot.app import App
from bot.handlers import setup as setup_handlers
from bot.sandbox import world
from bot.sandbox.page import SandboxPage
from bot.sandbox.telegram_server import FakeTelegramServer
from bridges.local.models import LocalMessage
from tests.bot.conftest import eventually
from tests.sandbox.conftest import (
    ANNA,
    BORIS,
    GROUP,
    IVAN,
    JANE,
    Browserless,
    button,
    message_in,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
STATIC = Path(__file__).resolve().parents[2] / "bot" / "sandbox" / "static"


async def test_the_stream_starts_with_the_world(client: Browserless, demo_bot: App) -> None:
    state = await client.open_stream()
    assert state["type"] == "state"
    assert state["bot"]["username"] == world.BOT_USERNAME
    assert state["customers"] == [JANE, IVAN, world.CUSTOMERS[2].id]
    assert state["agents"] == [ANNA, BORIS]
    assert state["users"][str(IVAN)]["language_code"] == "ru"
    assert state["agent_chat"] == {"id": GROUP, "title": world.AGENT_CHAT_TITLE,
                                   "is_forum": True, "admins": [ANNA]}
    assert state["topics"] == {} and state["helpdesk"] is None
    assert all(messages == [] for messages in state["chats"].values())

    # The customer presses Start: the greeting comes with its buttons.
    await client.post("/api/send", {"user_id": IVAN, "chat_id": IVAN, "text": "/start"})
    mine = await client.wait_event(message_in(IVAN, "/start", bot=False))
    assert mine["message"]["entities"][0]["type"] == "bot_command"
    greeting = await client.wait_event(message_in(IVAN, "Здравствуйте", bot=True))
    assert greeting["message"]["reply_markup"]["inline_keyboard"]

    # A page opened now sees the same world in its first event.
    async with aiohttp.ClientSession() as http, Browserless(client.url, http) as late:
        again = await late.open_stream()
    texts = [m.get("text") for m in again["chats"][str(IVAN)]]
    assert texts[0] == "/start" and "Здравствуйте" in texts[1]


async def test_a_request_from_first_word_to_rating(client: Browserless, demo_bot: App) -> None:
    await client.open_stream()
    await client.post("/api/send", {"user_id": JANE, "chat_id": JANE,
                                    "text": "Printer does not print\nError 42"})
    topic = await client.wait_event(lambda e: e["type"] == "topic" and e["chat_id"] == GROUP)
    thread = topic["thread_id"]
    assert "#1 Printer does not print" in topic["topic"]["name"]
    card = await client.wait_event(message_in(GROUP, "Error 42", bot=True))
    assert card["message"]["message_thread_id"] == thread

    # An agent answers in the topic, replying to the card; the customer gets it.
    await client.post("/api/send", {"user_id": BORIS, "chat_id": GROUP, "thread_id": thread,
                                    "reply_to": card["message"]["message_id"],
                                    "text": "Please restart it"})
    answer = await client.wait_event(message_in(JANE, "Please restart it", bot=True))
    assert "Boris" in answer["message"]["text"]

    # The customer edits her last words: the topic is told, the message shows edited.
    sent = await client.post("/api/send", {"user_id": JANE, "chat_id": JANE,
                                           "text": "Still broken"})
    await client.wait_event(message_in(GROUP, "Still broken", bot=True))
    await client.post("/api/edit", {"user_id": JANE, "chat_id": JANE,
                                    "message_id": sent["message_id"], "text": "Works now!"})
    edited = await client.wait_event(lambda e: e["type"] == "edited"
                                     and e["message"]["chat"]["id"] == JANE)
    assert edited["message"]["edit_date"]
    await client.wait_event(message_in(GROUP, "Works now!", bot=True, edited=True))

    # The card's Close button, pressed by an agent: the press is answered.
    pressed = await client.post("/api/press", {
        "user_id": ANNA, "chat_id": GROUP, "message_id": card["message"]["message_id"],
        "data": button(card["message"], "Close")})
    assert pressed["answer"] is not None
    closed = await client.wait_event(message_in(JANE, "closed", bot=True))
    rated = await client.post("/api/press", {
        "user_id": JANE, "chat_id": JANE, "message_id": closed["message"]["message_id"],
        "data": button(closed["message"], "5")})
    assert rated["answer"]["text"]  # the toast the page shows
    await client.wait_event(message_in(GROUP, "⭐⭐⭐⭐⭐", bot=True))


async def test_files_go_up_and_come_back(client: Browserless, demo_bot: App) -> None:
    await client.open_stream()
    await client.post("/api/send", {"user_id": JANE, "chat_id": JANE, "text": "Broken screen"})
    topic = await client.wait_event(lambda e: e["type"] == "topic")
    form = aiohttp.FormData({"user_id": str(JANE), "chat_id": str(JANE), "caption": "See"})
    form.add_field("file", PNG, filename="screen.png", content_type="image/png")
    async with client.http.post(client.url + "/api/upload", data=form) as response:
        assert response.status == 200, await response.text()
    mine = await client.wait_event(message_in(JANE, "See", bot=False))
    assert "photo" in mine["message"]
    await client.wait_event(message_in(GROUP, "See", bot=True))  # who wrote it, then the photo
    mirrored = await client.wait_event(
        lambda e: message_in(GROUP, bot=True)(e) and "photo" in e["message"])
    assert mirrored["message"]["message_thread_id"] == topic["thread_id"]
    photo = mirrored["message"]["photo"][-1]["file_id"]
    async with client.http.get(f"{client.url}/api/file/{photo}") as response:
        assert (response.content_type, await response.read()) == ("image/png", PNG)

    # An agent's document reaches the customer as a document, name and bytes intact.
    form = aiohttp.FormData({"user_id": str(ANNA), "chat_id": str(GROUP),
                             "thread_id": str(topic["thread_id"])})
    form.add_field("file", b"%PDF-1.4 manual", filename="manual.pdf",
                   content_type="application/pdf")
    async with client.http.post(client.url + "/api/upload", data=form) as response:
        assert response.status == 200, await response.text()
    delivered = await client.wait_event(
        lambda e: message_in(JANE, bot=True)(e) and "document" in e["message"])
    document = delivered["message"]["document"]
    assert document["file_name"] == "manual.pdf"
    async with client.http.get(f"{client.url}/api/file/{document['file_id']}") as response:
        assert await response.read() == b"%PDF-1.4 manual"
        assert 'filename="manual.pdf"' in response.headers["Content-Disposition"]

    async with client.http.get(f"{client.url}/api/file/no-such-file") as response:
        assert response.status == 404


async def test_inline_mode_from_the_agent_side(client: Browserless, demo_bot: App) -> None:
    await client.open_stream()
    await client.post("/api/send", {"user_id": IVAN, "chat_id": IVAN, "text": "VPN is down"})
    topic = await client.wait_event(lambda e: e["type"] == "topic")
    answer = await client.post("/api/inline", {"user_id": ANNA, "query": "VPN"})
    assert answer["answered"] is True
    [result] = [r for r in answer["results"] if "VPN is down" in r["title"]]
    chosen = await client.post("/api/inline/choose", {
        "user_id": ANNA, "chat_id": GROUP, "thread_id": topic["thread_id"],
        "query_id": answer["query_id"], "result_id": result["id"]})
    inserted = await client.wait_event(
        lambda e: e["type"] == "message" and e["message"]["message_id"] == chosen["message_id"]
        and e["message"]["chat"]["id"] == GROUP)
    assert inserted["message"]["via_bot"]["username"] == world.BOT_USERNAME
    # A ticket result in a topic is a note for the agents, never a reply to the customer.
    async def notes() -> list[str]:
        async with demo_bot.sessionmaker() as session:
            return list(await session.scalars(select(LocalMessage.text).where(
                LocalMessage.author_kind == "note")))

    [note] = await eventually(notes)
    assert "VPN is down" in note
    assert not any(message_in(IVAN, "🎫", bot=True)(e) for e in client.events)


async def test_reply_keyboards_and_contacts(sandbox: FakeTelegramServer, client: Browserless,
                                           page: SandboxPage) -> None:
    """The page draws the bot's reply keyboard from what the bot sent (a Message has
    no such field), and "share my contact" sends the customer's own contact."""
    await client.open_stream()
    session = AiohttpSession(api=TelegramAPIServer.from_base(sandbox.base_url))
    async with Bot(world.TOKEN, session=session) as bot:
        await bot.send_message(JANE, "Your phone, please", reply_markup=ReplyKeyboardMarkup(
            keyboard=[[KeyboardButton(text="Share", request_contact=True)]],
            one_time_keyboard=True))
    event = await client.wait_event(message_in(JANE, "Your phone"))
    keyboard = event["message"]["reply_keyboard"]
    assert keyboard["keyboard"][0][0]["request_contact"] is True
    assert page.snapshot()["chats"][str(JANE)][-1]["reply_keyboard"] == keyboard

    await client.post("/api/contact", {"user_id": JANE})
    contact = await client.wait_event(lambda e: e["type"] == "message"
                                      and "contact" in e["message"])
    assert contact["message"]["contact"]["user_id"] == JANE
    assert contact["message"]["contact"]["phone_number"] == world.CUSTOMERS[0].phone


async def test_admins_close_and_reopen_topics(sandbox: FakeTelegramServer, client: Browserless,
                                              demo_bot: App) -> None:
    await client.open_stream()
    await client.post("/api/send", {"user_id": JANE, "chat_id": JANE, "text": "Help"})
    thread = (await client.wait_event(lambda e: e["type"] == "topic"))["thread_id"]
    refused = await client.post("/api/topic", {"user_id": BORIS, "thread_id": thread,
                                               "closed": True}, status=400)
    assert "admins" in refused["error"]
    await client.post("/api/topic", {"user_id": ANNA, "thread_id": thread, "closed": True})
    closed = await client.wait_event(lambda e: e["type"] == "topic" and e["topic"]["closed"])
    assert closed["thread_id"] == thread
    service = await client.wait_event(lambda e: e["type"] == "message"
                                      and "forum_topic_closed" in e["message"])
    assert service["message"]["from"]["id"] == ANNA

    # The bot does not leave a ticket's topic closed: its next post there reopens it.
    await client.post("/api/send", {"user_id": JANE, "chat_id": JANE, "text": "Anyone?"})
    reopened = await client.wait_event(lambda e: e["type"] == "topic"
                                       and not e["topic"]["closed"])
    assert reopened["thread_id"] == thread
    await client.wait_event(message_in(GROUP, "Anyone?", bot=True))


async def test_bad_requests_are_told_not_crashed(client: Browserless, page: SandboxPage
                                                 ) -> None:
    await client.open_stream()
    missing = await client.post("/api/press", {"user_id": JANE, "chat_id": JANE,
                                               "message_id": 99, "data": "x"}, status=400)
    assert "no message 99" in missing["error"]
    empty = await client.post("/api/send", {"user_id": JANE, "chat_id": JANE, "text": " "},
                              status=400)
    assert empty["error"] == "text is empty"
    strangers = await client.post("/api/send", {"user_id": JANE, "chat_id": IVAN, "text": "hi"},
                                  status=400)
    assert "cannot act in the private chat" in strangers["error"]
    async with client.http.post(client.url + "/api/send", data="not json") as response:
        assert response.status == 400
    # Another web site open in the same browser cannot act in the sandbox.
    async with client.http.post(client.url + "/api/send", headers={"Origin": "http://evil.test"},
                                json={"user_id": JANE, "chat_id": JANE, "text": "hi"}) as r:
        assert r.status == 403
    assert not any(e["type"] == "message" for e in client.events[1:])


async def test_the_page_is_served_whole_and_offline(client: Browserless) -> None:
    for path, kind in (("/", "text/html"), ("/static/demo.js", "javascript"),
                       ("/static/demo.css", "text/css")):
        async with client.http.get(client.url + path) as response:
            assert response.status == 200 and kind in response.content_type
    # Nothing is fetched from elsewhere: every reference is relative to the page.
    for name in ("index.html", "helpdesk.html", "demo.js", "helpdesk.js", "demo.css",
                 "helpdesk.css"):
        text = (STATIC / name).read_text()
        assert not re.search(r"(src|href)=\"(https?:)?//", text), name
        assert "@import" not in text and "fetch(\"http" not in text, name


def test_the_pages_command_lists_are_the_bots_commands() -> None:
    """The page suggests slash commands; each must be one the bot handles."""
    handled: set[str] = set()
    router = setup_handlers()
    stack = [router]
    while stack:
        current = stack.pop()
        stack.extend(current.sub_routers)
        for handler in current.message.handlers:
            for flt in handler.filters or []:
                commands = getattr(flt.callback, "commands", ())
                handled.update(str(getattr(c, "command", c)) for c in commands)
    script = (STATIC / "demo.js").read_text()
    blocks = re.findall(r"const (?:CUSTOMER|AGENT)_COMMANDS = \[(.*?)\n\];", script, re.S)
    assert len(blocks) == 2
    listed = {name for block in blocks for name in re.findall(r'\["(\w+)", "', block)}
    assert listed, "no command lists found in demo.js"
    assert listed <= handled, listed - handled
