"""The fake Bot API server, driven by a real aiogram Bot over real HTTP."""

from __future__ import annotations

import asyncio
import copy
import io
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    BufferedInputFile,
    ChatFullInfo,
    ChatMemberAdministrator,
    ChatMemberLeft,
    ChatMemberMember,
    ChatMemberOwner,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InlineQueryResultArticle,
    InputMediaDocument,
    InputMediaPhoto,
    InputTextMessageContent,
    Message,
    ReplyParameters,
    Update,
)

from bot.sandbox.telegram_server import FakeTelegramServer, parse_html

TOKEN = "123456:TEST"
CUSTOMER = 1001
AGENT = 1002
OWNER = 1003
GROUP = -1001234567890
PLAIN_GROUP = -1009999999999


@pytest.fixture
async def server() -> AsyncIterator[FakeTelegramServer]:
    async with FakeTelegramServer(token=TOKEN) as server:
        server.add_user(CUSTOMER, "Alice", "alice")
        server.add_user(AGENT, "Bob", "bob_agent", language_code="ru")
        server.add_user(OWNER, "Olga")
        server.add_supergroup(GROUP, members=[AGENT], owner_id=OWNER)
        server.add_supergroup(PLAIN_GROUP, title="Plain", is_forum=False, members=[AGENT])
        yield server


class LocalSession(AiohttpSession):
    """aiogram's real HTTP session, minus the 250 ms pause its close() makes for TLS
    connections to wind down: there are none on 127.0.0.1, and the pause per test would
    dominate this file's runtime."""

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


def make_bot(server: FakeTelegramServer, token: str = TOKEN) -> Bot:
    session = LocalSession(api=TelegramAPIServer.from_base(server.base_url))
    return Bot(token, session=session, default=DefaultBotProperties(parse_mode="HTML"))


@pytest.fixture
async def bot(server: FakeTelegramServer) -> AsyncIterator[Bot]:
    async with make_bot(server) as bot:
        yield bot


def keyboard(*callback_data: str) -> InlineKeyboardMarkup:
    buttons = [[InlineKeyboardButton(text=data, callback_data=data)] for data in callback_data]
    return InlineKeyboardMarkup(inline_keyboard=buttons)


async def test_get_me_auth_and_routing(server: FakeTelegramServer, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.username) == (123456, True, "deskbridge_test_bot")
    assert server.bot_user == {
        "id": 123456,
        "is_bot": True,
        "first_name": "Deskbridge",
        "username": "deskbridge_test_bot",
    }

    async with make_bot(server, token="123456:WRONG") as intruder:
        with pytest.raises(TelegramUnauthorizedError, match="Unauthorized"):
            await intruder.get_me()

    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.base_url}/bot{TOKEN}/GETME") as response:
            assert (await response.json())["result"]["id"] == 123456
        async with http.get(f"{server.base_url}/bot{TOKEN}/noSuchMethod") as response:
            assert response.status == 404
            assert await response.json() == {
                "ok": False,
                "error_code": 404,
                "description": "Not Found",
            }
        json_body = {"chat_id": CUSTOMER, "text": "hi", "reply_markup": {"inline_keyboard": []}}
        async with http.post(f"{server.base_url}/bot{TOKEN}/sendMessage", json=json_body) as r:
            Message.model_validate((await r.json())["result"])
        form = aiohttp.FormData(
            {"chat_id": str(CUSTOMER), "reply_markup": '{"inline_keyboard":[]}'}
        )
        form.add_field("photo", b"jpeg", filename="direct.jpg")  # a part named like the parameter
        async with http.post(f"{server.base_url}/bot{TOKEN}/sendPhoto", data=form) as r:
            assert Message.model_validate((await r.json())["result"]).photo
    assert [name for name, _ in server.requests] == [
        "getMe",
        "getMe",
        "noSuchMethod",
        "sendMessage",
        "sendPhoto",
    ]
    assert server.requests[-1][1]["reply_markup"] == {"inline_keyboard": []}  # JSON decoded


async def test_long_poll_offsets_and_redelivery(server: FakeTelegramServer, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await server.wait_for(lambda s: s.calls("getUpdates"))
    sent = server.user_sends_text(CUSTOMER, CUSTOMER, "/start")
    updates = await asyncio.wait_for(poll, 1)  # answered as soon as the update exists
    assert [u.message.text for u in updates if u.message] == ["/start"]
    assert updates[0].message.entities[0].type == "bot_command"
    assert updates[0].message.message_id == sent["message_id"] == 1

    # not confirmed: handed out again, e.g. to a bot restarted after a crash
    again = await bot.get_updates(timeout=0)
    assert [u.update_id for u in again] == [updates[0].update_id]

    assert await bot.get_updates(offset=updates[0].update_id + 1, timeout=0) == []
    await server.wait_updates_confirmed(timeout=0.1)
    assert await bot.get_updates(timeout=1) == []  # long poll ends empty after its timeout


async def test_only_one_poller_and_allowed_updates(server: FakeTelegramServer, bot: Bot) -> None:
    older = asyncio.create_task(bot.get_updates(timeout=5))
    await server.wait_for(lambda s: s.calls("getUpdates"))
    newer = asyncio.create_task(bot.get_updates(timeout=5, allowed_updates=["callback_query"]))
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates request"):
        await older
    server.user_sends_text(CUSTOMER, CUSTOMER, "filtered out by allowed_updates")
    message = await bot.send_message(CUSTOMER, "pick", reply_markup=keyboard("a"))
    server.user_presses(CUSTOMER, (CUSTOMER, message.message_id), "a")
    updates = await asyncio.wait_for(newer, 1)
    assert [u.callback_query.data for u in updates if u.callback_query] == ["a"]
    assert len(updates) == 1


async def test_poller_vanishing_mid_long_poll(server: FakeTelegramServer, bot: Bot) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{server.base_url}/bot{TOKEN}/getUpdates"
        doomed = asyncio.create_task(http.post(url, data={"timeout": "5"}))
        await server.wait_for(lambda s: s.calls("getUpdates"))
        doomed.cancel()  # like a SIGKILLed bot: the connection just goes away
        with pytest.raises(asyncio.CancelledError):
            await doomed
    server.user_sends_text(CUSTOMER, CUSTOMER, "still delivered")
    updates = await bot.get_updates(timeout=1)
    assert [u.message.text for u in updates if u.message] == ["still delivered"]


async def test_stop_answers_a_pending_long_poll() -> None:
    server = FakeTelegramServer(token=TOKEN)
    await server.start()
    async with make_bot(server) as bot:
        poll = asyncio.create_task(bot.get_updates(timeout=30))
        await server.wait_for(lambda s: s.calls("getUpdates"))
        await server.stop()
        assert await asyncio.wait_for(poll, 1) == []


async def test_topics_and_their_errors(server: FakeTelegramServer, bot: Bot) -> None:
    topic = await bot.create_forum_topic(GROUP, "Ticket #1")
    assert (topic.message_thread_id, topic.name, topic.icon_color) == (1, "Ticket #1", 7322096)
    assert server.topics[GROUP][1] == {
        "name": "Ticket #1",
        "icon_color": 7322096,
        "closed": False,
        "deleted": False,
    }

    message = await bot.send_message(GROUP, "<b>New</b> ticket", message_thread_id=1)
    assert (message.message_id, message.message_thread_id, message.is_topic_message) == (2, 1, True)
    assert message.reply_to_message.forum_topic_created.name == "Ticket #1"
    [record] = server.sent_to(GROUP, thread_id=1)
    assert (record["text"], record["html"], record["parse_mode"]) == (
        "New ticket",
        "<b>New</b> ticket",
        "HTML",
    )
    assert (record["thread_id"], record["reply_to"]) == (1, None)

    reply = server.user_sends_text(AGENT, GROUP, "on it", reply_to=message.message_id)
    assert reply["message_thread_id"] == 1  # a reply lands in the topic of its message

    await bot.close_forum_topic(GROUP, 1)
    with pytest.raises(TelegramBadRequest, match="TOPIC_CLOSED"):
        await bot.send_message(GROUP, "x", message_thread_id=1)
    await bot.reopen_forum_topic(GROUP, 1)
    with pytest.raises(TelegramBadRequest, match="TOPIC_NOT_MODIFIED"):
        await bot.reopen_forum_topic(GROUP, 1)

    server.delete_topic(GROUP, 1)
    with pytest.raises(TelegramBadRequest, match="Bad Request: message thread not found"):
        await bot.send_message(GROUP, "x", message_thread_id=1)
    assert server.sent_to(GROUP)[0]["deleted"]  # deleting a topic deletes its messages
    with pytest.raises(TelegramBadRequest, match="message thread not found"):
        await bot.send_message(GROUP, "x", message_thread_id=777)

    with pytest.raises(TelegramBadRequest, match="the chat is not a forum"):
        await bot.create_forum_topic(PLAIN_GROUP, "nope")
    server.add_supergroup(-1005, bot_can_manage_topics=False)
    with pytest.raises(TelegramBadRequest, match="not enough rights to create a topic"):
        await bot.create_forum_topic(-1005, "nope")
    with pytest.raises(TelegramBadRequest, match="Bad Request: chat not found"):
        await bot.send_message(-42, "x")


async def test_html_parse_mode(server: FakeTelegramServer, bot: Bot) -> None:
    html = '<b>Hi</b> &lt;3 Tom & Jerry <a href="https://x.io/?a=1&amp;b=2">link</a>'
    message = await bot.send_message(CUSTOMER, html)
    assert message.text == "Hi <3 Tom & Jerry link"
    assert [(e.type, e.offset, e.length, e.url) for e in message.entities] == [
        ("bold", 0, 2, None),
        ("text_link", 18, 4, "https://x.io/?a=1&b=2"),
    ]
    assert (server.sent[-1]["text"], server.sent[-1]["html"]) == (message.text, html)

    for bad, reason in [
        ("<div>x</div>", 'Unsupported start tag "div" at byte offset 0'),
        ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
        ("<b>x", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ('<span class="x">y</span>', 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ]:
        with pytest.raises(TelegramBadRequest) as error:
            await bot.send_message(CUSTOMER, bad)
        assert error.value.message == f"Bad Request: can't parse entities: {reason}"

    text, entities = parse_html(
        '😀 <tg-spoiler>s</tg-spoiler><pre><code class="language-py">x</code></pre>'
        "<blockquote expandable>q</blockquote>"
    )
    assert text == "😀 sxq"
    assert entities == [
        {"type": "spoiler", "offset": 3, "length": 1},
        {"type": "pre", "offset": 4, "length": 1, "language": "py"},
        {"type": "expandable_blockquote", "offset": 5, "length": 1},
    ]


async def test_text_limits(server: FakeTelegramServer, bot: Bot) -> None:
    await bot.send_message(CUSTOMER, "x" * 4096)
    await bot.send_message(CUSTOMER, "😀" * 2048)  # 2 UTF-16 code units each
    for too_long in ("x" * 4097, "😀" * 2049, "<b>" + "x" * 4097 + "</b>"):
        with pytest.raises(TelegramBadRequest, match="Bad Request: message is too long"):
            await bot.send_message(CUSTOMER, too_long)
    for empty in ("", "  ", "<b></b>"):
        with pytest.raises(TelegramBadRequest, match="Bad Request: message text is empty"):
            await bot.send_message(CUSTOMER, empty)
    photo = BufferedInputFile(b"jpeg", "p.jpg")
    with pytest.raises(TelegramBadRequest, match="Bad Request: message caption is too long"):
        await bot.send_photo(CUSTOMER, photo, caption="c" * 1025)
    with pytest.raises(TelegramBadRequest, match="Bad Request: BUTTON_DATA_INVALID"):
        await bot.send_message(CUSTOMER, "x", reply_markup=keyboard("d" * 65))


async def test_injected_faults(server: FakeTelegramServer, bot: Bot) -> None:
    server.fail_next("sendMessage", retry_after=3)
    with pytest.raises(TelegramRetryAfter) as retry:
        await bot.send_message(CUSTOMER, "x")
    assert retry.value.retry_after == 3
    assert retry.value.message.endswith("Original description: Too Many Requests: retry after 3")
    await bot.send_message(CUSTOMER, "x")

    server.fail_next("sendMessage", 403, chat_id=AGENT)
    await bot.send_message(CUSTOMER, "other chats are unaffected")
    with pytest.raises(TelegramForbiddenError, match="Forbidden: bot was blocked by the user"):
        await bot.send_message(AGENT, "x")

    server.fail_next("getMe", 502, times=2)
    for _ in range(2):
        with pytest.raises(ClientDecodeError):  # a proxy's HTML-ish body is not JSON
            await bot.get_me()
    await bot.get_me()

    server.fail_next("sendMessage", 400, "Bad Request: something odd")
    with pytest.raises(TelegramBadRequest, match="something odd"):
        await bot.send_message(CUSTOMER, "x")
    assert len(server.calls("sendMessage")) == 5  # failed calls are recorded too


async def test_blocking_and_rate_limits(server: FakeTelegramServer, bot: Bot) -> None:
    server.block_user(CUSTOMER)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(CUSTOMER, "x")
    server.unblock_user(CUSTOMER)
    await bot.send_message(CUSTOMER, "x")

    change = server.my_chat_member(CUSTOMER, "kicked")
    with pytest.raises(TelegramForbiddenError):
        await bot.send_chat_action(CUSTOMER, "typing")
    [update] = await bot.get_updates(timeout=0)
    assert update.my_chat_member.new_chat_member.status == change["new_chat_member"]["status"]

    server.enforce_limits = True
    for _ in range(3):  # a short burst to one private chat is tolerated
        await bot.send_message(AGENT, "x")
    with pytest.raises(TelegramRetryAfter) as retry:
        await bot.send_message(AGENT, "x")
    assert retry.value.retry_after >= 1
    assert server.limit_429s == 1


async def test_photo_upload_resend_and_media_group(server: FakeTelegramServer, bot: Bot) -> None:
    photo = BufferedInputFile(b"\xff\xd8jpeg-bytes", "p.jpg")
    first = await bot.send_photo(CUSTOMER, photo, caption="<i>look</i>")
    file_id = first.photo[-1].file_id
    assert first.caption == "look"
    again = await bot.send_photo(GROUP, file_id)
    assert again.photo[-1].file_id == file_id
    assert [(r["media_type"], r["file_id"], r["text"]) for r in server.sent] == [
        ("photo", file_id, "look"),
        ("photo", file_id, None),
    ]
    with pytest.raises(TelegramBadRequest, match="wrong file identifier/HTTP URL specified"):
        await bot.send_photo(CUSTOMER, "no-such-file-id")
    from_url = await bot.send_document(CUSTOMER, "https://example.com/report.pdf")
    assert from_url.document.file_name == "report.pdf"

    album = await bot.send_media_group(
        AGENT,
        [
            InputMediaPhoto(media=BufferedInputFile(b"one", "1.jpg"), caption="<b>two</b> files"),
            InputMediaDocument(media=BufferedInputFile(b"%PDF", "spec.pdf")),
        ],
    )
    assert [m.message_id for m in album] == [1, 2]
    assert album[0].media_group_id == album[1].media_group_id is not None
    assert album[0].caption == "two files"
    assert album[1].document.mime_type == "application/pdf"
    records = server.sent_to(AGENT)
    assert [(r["media_type"], r["file_name"], r["text"]) for r in records] == [
        ("photo", None, "two files"),
        ("document", "spec.pdf", None),
    ]
    assert records[0]["media_group_id"] == album[0].media_group_id


async def test_user_files_get_file_and_download(server: FakeTelegramServer, bot: Bot) -> None:
    sent = server.user_sends_document(CUSTOMER, CUSTOMER, file_name="log.txt", data=b"contents")
    file = await bot.get_file(sent["document"]["file_id"])
    assert file.file_path == "documents/file_1.txt"
    assert file.file_size == len(b"contents")
    downloaded = await bot.download(file)
    assert isinstance(downloaded, io.BytesIO)
    assert downloaded.getvalue() == b"contents"

    huge = server.user_sends_document(CUSTOMER, CUSTOMER, size=25 * 1024 * 1024)
    with pytest.raises(TelegramBadRequest, match="Bad Request: file is too big"):
        await bot.get_file(huge["document"]["file_id"])


async def test_user_updates_parse_as_aiogram_types(server: FakeTelegramServer, bot: Bot) -> None:
    topic = await bot.create_forum_topic(GROUP, "Ticket")
    thread = topic.message_thread_id
    server.user_sends_text(AGENT, GROUP, "in topic", thread_id=thread)
    server.user_sends_photo(CUSTOMER, CUSTOMER, caption="photo")
    server.user_sends_voice(CUSTOMER, CUSTOMER)
    server.user_sends_video(CUSTOMER, CUSTOMER)
    server.user_sends_album(CUSTOMER, CUSTOMER, [("photo", b"1"), ("document", b"2", "b.pdf")], "c")
    server.user_sends(CUSTOMER, CUSTOMER, location={"latitude": 55.7, "longitude": 37.6})
    text = server.user_sends_text(CUSTOMER, CUSTOMER, "typo")
    server.user_edits_text(CUSTOMER, CUSTOMER, text["message_id"], "fixed")
    server.user_inline_query(CUSTOMER, "faq")
    server.user_chooses_inline_result(CUSTOMER, "r1", "faq")

    updates = await bot.get_updates(timeout=0)
    expected = ["message"] * 8 + ["edited_message", "inline_query", "chosen_inline_result"]
    assert [u.event_type for u in updates] == expected
    in_topic = updates[0].message
    assert (in_topic.message_thread_id, in_topic.is_topic_message) == (thread, True)
    assert in_topic.reply_to_message.forum_topic_created is not None
    album = [u.message for u in updates[4:6]]
    assert album[0].media_group_id == album[1].media_group_id
    assert (album[0].caption, album[1].caption) == ("c", None)
    assert updates[8].edited_message.text == "fixed"
    raw = server.push_update({"message": server.user_sends_text(AGENT, GROUP, "raw")})
    Update.model_validate(raw)


async def test_callback_query_round_trip(server: FakeTelegramServer, bot: Bot) -> None:
    message = await bot.send_message(
        CUSTOMER, "Close the ticket?", reply_markup=keyboard("close:7")
    )
    query_id = server.user_presses(CUSTOMER, message.model_dump(by_alias=True), "close:7")
    [update] = await bot.get_updates(timeout=0)
    assert update.callback_query.id == query_id
    assert update.callback_query.message.message_id == message.message_id

    await bot.answer_callback_query(query_id, text="Closed", show_alert=True)
    assert server.callback_answers[query_id] == {"text": "Closed", "show_alert": True, "url": None}
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query_id)
    with pytest.raises(ValueError, match="no button"):
        server.user_presses(CUSTOMER, (CUSTOMER, message.message_id), "forged")

    inline_query = server.user_inline_query(CUSTOMER, "faq")
    result = InlineQueryResultArticle(
        id="1", title="FAQ", input_message_content=InputTextMessageContent(message_text="See FAQ")
    )
    await bot.answer_inline_query(inline_query["id"], [result], cache_time=0)
    assert server.inline_answers[inline_query["id"]]["results"][0]["title"] == "FAQ"


async def test_edit_delete_reply_copy(server: FakeTelegramServer, bot: Bot) -> None:
    question = server.user_sends_text(CUSTOMER, CUSTOMER, "help")
    answer = await bot.send_message(
        CUSTOMER,
        "<b>Sure</b>",
        reply_markup=keyboard("more"),
        reply_parameters=ReplyParameters(message_id=question["message_id"]),
    )
    assert answer.reply_to_message.text == "help"
    assert server.sent[-1]["reply_to"] == question["message_id"]
    with pytest.raises(TelegramBadRequest, match="message to be replied not found"):
        await bot.send_message(CUSTOMER, "x", reply_parameters=ReplyParameters(message_id=99))

    with pytest.raises(TelegramBadRequest, match="message is not modified: specified new"):
        await bot.edit_message_text(
            "<b>Sure</b>",
            chat_id=CUSTOMER,
            message_id=answer.message_id,
            reply_markup=keyboard("more"),
        )
    edited = await bot.edit_message_text("Done", chat_id=CUSTOMER, message_id=answer.message_id)
    assert edited.reply_markup is None  # editing text without a markup drops the keyboard
    record = server.sent[-1]
    assert (record["text"], record["reply_markup"], len(record["edits"])) == ("Done", None, 1)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=CUSTOMER, message_id=99)
    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await bot.edit_message_text("x", chat_id=CUSTOMER, message_id=question["message_id"])

    copied = await bot.copy_message(GROUP, CUSTOMER, question["message_id"])
    assert server.sent_to(GROUP)[0]["message_id"] == copied.message_id
    forwarded = await bot.forward_message(GROUP, CUSTOMER, question["message_id"])
    assert forwarded.forward_origin.sender_user.id == CUSTOMER
    assert await bot.set_message_reaction(CUSTOMER, question["message_id"], [])
    assert await bot.delete_message(CUSTOMER, answer.message_id)
    assert record["deleted"]
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(CUSTOMER, answer.message_id)


async def test_chats_members_commands_webhook(server: FakeTelegramServer, bot: Bot) -> None:
    chat = await bot.get_chat(GROUP)
    assert isinstance(chat, ChatFullInfo)
    assert (chat.type, chat.title, chat.is_forum) == ("supergroup", "Agents", True)
    assert (await bot.get_chat(CUSTOMER)).first_name == "Alice"

    me = await bot.get_chat_member(GROUP, 123456)
    assert isinstance(me, ChatMemberAdministrator)
    assert me.can_manage_topics
    assert isinstance(await bot.get_chat_member(GROUP, AGENT), ChatMemberMember)
    assert isinstance(await bot.get_chat_member(GROUP, CUSTOMER), ChatMemberLeft)
    assert isinstance(await bot.get_chat_member(GROUP, OWNER), ChatMemberOwner)
    server.remove_member(GROUP, AGENT)
    assert isinstance(await bot.get_chat_member(GROUP, AGENT), ChatMemberLeft)
    admins = await bot.get_chat_administrators(GROUP)
    assert [a.user.id for a in admins] == [OWNER, 123456]

    await bot.set_my_commands([{"command": "start", "description": "Start"}])
    assert [c.command for c in await bot.get_my_commands()] == ["start"]
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([{"command": "Bad Command", "description": "x"}])

    await bot.set_webhook("https://bot.example/hook")
    server.set_webhook_error("Connection refused", date=1_700_000_000)
    info = await bot.get_webhook_info()
    assert (info.url, info.last_error_message) == ("https://bot.example/hook", "Connection refused")
    with pytest.raises(TelegramConflictError, match="webhook is active"):
        await bot.get_updates(timeout=0)
    await bot.delete_webhook()
    assert await bot.get_updates(timeout=0) == []


async def test_wait_for(server: FakeTelegramServer, bot: Bot) -> None:
    async def reply_later() -> None:
        await asyncio.sleep(0.05)
        await bot.send_message(CUSTOMER, "late reply")

    task = asyncio.create_task(reply_later())
    record = await server.wait_for(lambda s: next(iter(s.sent_to(CUSTOMER)), None), timeout=2)
    assert record["text"] == "late reply"
    await task
    with pytest.raises(AssertionError, match="late reply"):  # the dump shows recent messages
        await server.wait_for(lambda s: s.sent_to(AGENT), timeout=0.05)


async def test_the_bot_added_to_a_group_and_its_rights(server: FakeTelegramServer,
                                                       bot: Bot) -> None:
    new_group = -1005555555555
    server.add_bot_to_group(OWNER, new_group, "Helpdesk", can_delete_messages=False)
    [update] = await bot.get_updates(timeout=0)
    event = update.my_chat_member
    assert event is not None and event.from_user.id == OWNER
    assert (event.chat.id, event.chat.type, event.chat.title) == (new_group, "supergroup",
                                                                  "Helpdesk")
    assert isinstance(event.old_chat_member, ChatMemberLeft)
    added = event.new_chat_member
    assert isinstance(added, ChatMemberAdministrator)
    assert added.can_manage_topics and not added.can_delete_messages
    assert (await bot.get_chat(new_group)).is_forum
    owner = await bot.get_chat_member(new_group, OWNER)
    assert isinstance(owner, ChatMemberOwner)

    server.set_bot_status(OWNER, new_group, "member")
    [_, update] = await bot.get_updates(timeout=0)
    assert update.my_chat_member is not None
    assert isinstance(update.my_chat_member.old_chat_member, ChatMemberAdministrator)
    assert isinstance(update.my_chat_member.new_chat_member, ChatMemberMember)
    assert isinstance(await bot.get_chat_member(new_group, server.bot_id), ChatMemberMember)

    server.inline_mode = False
    assert not (await bot.get_me()).supports_inline_queries


async def test_observers_see_every_change_of_the_world(
    server: FakeTelegramServer, bot: Bot
) -> None:
    """The demo page's live stream: one event per change, with the changed object."""
    events: list[dict] = []  # each as it was when it was announced
    live: list[dict] = []
    server.observers.append(lambda event: events.append(copy.deepcopy(event)))
    server.observers.append(live.append)

    asked = server.user_sends_text(CUSTOMER, CUSTOMER, "hello")
    sent = await bot.send_message(CUSTOMER, "<b>hi</b>", reply_markup=keyboard("ok"))
    await bot.edit_message_text("<i>hi again</i>", chat_id=CUSTOMER, message_id=sent.message_id,
                                reply_markup=keyboard("ok"))
    server.user_edits_text(CUSTOMER, CUSTOMER, asked["message_id"], "hello, edited")
    query_id = server.user_presses(CUSTOMER, (CUSTOMER, sent.message_id), "ok")
    await bot.answer_callback_query(query_id, text="Done")
    topic = await bot.create_forum_topic(GROUP, "Printer")
    await bot.close_forum_topic(GROUP, topic.message_thread_id)
    server.reopen_topic(GROUP, topic.message_thread_id)
    await bot.delete_message(CUSTOMER, sent.message_id)
    inline = server.user_inline_query(AGENT, "faq")
    await bot.answer_inline_query(inline["id"], results=[], cache_time=0)

    kinds = [event["type"] for event in events]
    assert kinds == [
        "message", "message", "edited", "edited", "callback_answer",
        "message", "topic",  # the topic's first message, then the topic
        "topic", "message",  # closed, and the service message in it
        "topic",  # reopened by an admin helper: no service message
        "deleted", "inline_answer",
    ]
    assert live[0]["message"] is asked  # the live object: an observer copies what it keeps
    assert live[1]["message"] is live[2]["message"]  # sent, then edited in place
    assert events[1]["message"]["entities"] == [{"type": "bold", "offset": 0, "length": 2}]
    assert events[2]["message"]["text"] == "hi again"
    assert events[2]["message"]["entities"] == [{"type": "italic", "offset": 0, "length": 8}]
    assert events[3]["message"]["text"] == "hello, edited"
    assert (events[4]["query_id"], events[4]["text"]) == (query_id, "Done")
    assert events[6] == {"type": "topic", "chat_id": GROUP, "thread_id": topic.message_thread_id,
                         "topic": {"name": "Printer", "icon_color": 7322096, "closed": False,
                                   "deleted": False}}
    assert events[7]["topic"]["closed"] is True and "forum_topic_closed" in events[8]["message"]
    assert events[9]["topic"]["closed"] is False
    assert events[10] == {"type": "deleted", "chat_id": CUSTOMER, "message_id": sent.message_id}
    assert (events[11]["query_id"], events[11]["results"]) == (inline["id"], [])
