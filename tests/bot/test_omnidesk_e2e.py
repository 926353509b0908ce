"""The bot with the Omnidesk bridge, end to end: the fake Bot API server on one
side, the fake Omnidesk on the other, real HTTP on loopback both ways."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest

from bot.app import App
from bot.db.session import create_engine
from bot.sandbox.omnidesk import FakeOmnidesk
from bot.sandbox.telegram_server import FakeTelegramServer
from bridges.registry import BridgeDeps, create_bridge
from tests.bot.conftest import AGENT_CHAT, ANNA, BORIS, IVAN, JANE, find, make_settings, running
from tests.bot.test_flow import open_ticket

CHANNEL = "cch7"
ANNA_STAFF = "anna@support.example"  # Anna's Omnidesk account
T = TypeVar("T")


@pytest.fixture
async def desk() -> AsyncIterator[FakeOmnidesk]:
    async with FakeOmnidesk() as desk:
        desk.add_channel(CHANNEL)
        desk.add_staff(ANNA_STAFF, "Anna Omnidesk")
        yield desk


@contextlib.asynccontextmanager
async def omnidesk_app(tg: FakeTelegramServer, url: str, redis_url: str | None,
                       desk: FakeOmnidesk, *, channel: str | None = None) -> AsyncIterator[App]:
    """The bot running with an Omnidesk bridge built as the registry builds it."""
    engine = create_engine(url)
    try:
        bridge = await create_bridge("omnidesk", BridgeDeps(engine=engine,
                                                            env=desk.env(channel=channel)))
        async with running(make_settings(tg, url, redis_url, provider="omnidesk"),
                           bridge=bridge) as app:
            yield app
    finally:
        await engine.dispose()


async def eventually(probe: Callable[[], T], timeout: float = 10.0) -> T:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (value := probe()):
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {value!r}")
        await asyncio.sleep(0.05)
    return value


def only_case(desk: FakeOmnidesk) -> dict[str, Any]:
    [case] = desk.store.cases.values()
    return case


def count(tg: FakeTelegramServer, chat_id: int, needle: str) -> int:
    return sum(1 for r in tg.sent_to(chat_id) if needle in (r["text"] or r.get("caption") or ""))


async def test_a_telegram_conversation_runs_through_omnidesk(
    tg: FakeTelegramServer, migrated_url: str, redis_url: str | None, desk: FakeOmnidesk
) -> None:
    async with omnidesk_app(tg, migrated_url, redis_url, desk) as app:
        topic, _ = await open_ticket(tg, IVAN, "Принтер не печатает\nОшибка 42 с утра")

        # The case is opened for the customer's Telegram username.
        case = await eventually(lambda: only_case(desk) if desk.store.cases else None)
        user = desk.store.users[case["user_id"]]
        assert (case["subject"], user["telegram_data"]) == ("Принтер не печатает", "ivan")
        assert desk.messages_of(case["case_id"])[0]["content"] == (
            "Принтер не печатает\nОшибка 42 с утра")
        await tg.wait_for(lambda s: find(s.sent_to(IVAN), case["case_number"]))

        # A reply typed in Omnidesk reaches the customer and the topic.
        desk.staff_replies(case["case_id"], html="<p>Перезагрузите <b>его</b></p>",
                           staff_id=desk.staff_id_of(ANNA_STAFF),
                           files=[("howto.pdf", b"%PDF-1.4 howto", "application/pdf")])
        reply = await tg.wait_for(lambda s: find(s.sent_to(IVAN), "Перезагрузите"))
        assert "Anna Omnidesk" in reply["text"]
        assert "<b>его</b>" in reply["html"]  # Omnidesk's HTML, sanitised by the bot
        await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "Перезагрузите"))
        await tg.wait_for(lambda s: any(r["file_name"] == "howto.pdf" for r in s.sent_to(IVAN)))

        # The customer's answer, with a file, goes up as the same user.
        tg.user_sends_document(IVAN, IVAN, file_name="photo-of-error.pdf",
                               data=b"%PDF error", caption="Вот ошибка")
        posted = await eventually(lambda: [m for m in desk.messages_of(case["case_id"])
                                           if "Вот ошибка" in m["content"]])
        assert posted[0]["user_id"] == case["user_id"]
        [file] = posted[0]["attachments"]
        assert desk.file(file["file_id"]).data == b"%PDF error"

        # A note typed in Omnidesk stays with the agents.
        desk.staff_adds_note(case["case_id"], "Клиент VIP")
        await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "Клиент VIP"))

        # Closed in Omnidesk: the customer is told.
        desk.close(case["case_id"])
        await tg.wait_for(lambda s: find(s.sent_to(IVAN), "закрыто"))
        for _ in range(3):
            await app.poll_provider()
        await app.outbox.drain(timeout=3)

    assert not find(tg.sent_to(IVAN), "VIP")
    assert count(tg, IVAN, "Перезагрузите") == 1
    assert count(tg, AGENT_CHAT, "Вот ошибка") == 1  # mirrored once, never echoed back
    assert count(tg, IVAN, "закрыто") == 1


async def test_agents_answer_from_telegram_as_their_staff_member(
    tg: FakeTelegramServer, migrated_url: str, redis_url: str | None, desk: FakeOmnidesk
) -> None:
    async with omnidesk_app(tg, migrated_url, redis_url, desk, channel=CHANNEL) as app:
        tg.user_sends_text(ANNA, ANNA, f"/link {ANNA_STAFF}")
        await tg.wait_for(lambda s: find(s.sent_to(ANNA), "Anna Omnidesk"))
        # Jane has no username: the custom channel knows her by her Telegram id.
        topic, _ = await open_ticket(tg, JANE, "Cannot log in")
        case = await eventually(lambda: only_case(desk) if desk.store.cases else None)
        user = desk.store.users[case["user_id"]]
        assert (case["channel"], user["user_custom_id"]) == (CHANNEL, str(JANE))

        tg.user_sends_text(ANNA, AGENT_CHAT, "Reset link sent", thread_id=topic)
        tg.user_sends_text(BORIS, AGENT_CHAT, "Check your spam folder", thread_id=topic)
        tg.user_sends_text(ANNA, AGENT_CHAT, "/note Called her", thread_id=topic)
        await tg.wait_for(lambda s: find(s.sent_to(JANE), "spam folder"))

        def posted() -> list[tuple[int, bool, str]] | None:
            found = [(m["staff_id"], m["note"], m["content"])
                     for m in desk.messages_of(case["case_id"])[1:]]
            return found if len(found) == 3 else None

        assert await eventually(posted) == [
            (desk.staff_id_of(ANNA_STAFF), False, "Reset link sent"),
            (desk.api_staff_id, False, "Boris: Check your spam folder"),
            (desk.api_staff_id, True, "Anna: Called her"),
        ]
        for _ in range(3):  # several poll cycles bring the bot's own messages back
            await app.poll_provider()
        await app.outbox.drain(timeout=3)

    assert count(tg, JANE, "Reset link sent") == 1
    assert count(tg, JANE, "spam folder") == 1
    assert not find(tg.sent_to(JANE), "Called her")
    assert count(tg, AGENT_CHAT, "Reset link sent") == 0  # the agent's own message is there
    assert count(tg, AGENT_CHAT, "Called her") == 0


async def test_provider_failures_are_retried_and_nothing_is_lost(
    tg: FakeTelegramServer, migrated_url: str, redis_url: str | None, desk: FakeOmnidesk
) -> None:
    async with omnidesk_app(tg, migrated_url, redis_url, desk) as app:
        desk.fail_next(500, path="/api/cases.json", method="POST")
        await open_ticket(tg, IVAN, "Flaky helpdesk")
        case = await eventually(lambda: only_case(desk) if desk.store.cases else None)

        desk.fail_next(429, path="/messages.json", method="POST", retry_after=1)
        tg.user_sends_text(IVAN, IVAN, "After a rate limit")
        await eventually(lambda: any("rate limit" in m["content"]
                                     for m in desk.messages_of(case["case_id"])))

        desk.fail_next(503, path="/api/cases.json", method="GET", times=2)
        desk.staff_replies(case["case_id"], "Answer after an outage")
        await tg.wait_for(lambda s: find(s.sent_to(IVAN), "Answer after an outage"))
        for _ in range(3):
            await app.poll_provider()
        await app.outbox.drain(timeout=3)

    assert len(desk.store.cases) == 1
    contents = [m["content"] for m in desk.messages_of(case["case_id"])]
    assert contents == ["Flaky helpdesk", "After a rate limit", "Answer after an outage"]
    assert count(tg, IVAN, "Answer after an outage") == 1
    assert count(tg, AGENT_CHAT, "After a rate limit") == 1
