"""The iqstore bridge beyond the contract: the envelope's error table,
sessions per customer, LocalIds, paging back, reading chats by activity, and
the agent side."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.sandbox.iqstore import FakeIqstore
from bridges.base import (
    AgentIdentity,
    Attachment,
    Capability,
    CustomerIdentity,
    MessageAdded,
    NewTicket,
    TicketChanged,
)
from bridges.errors import (
    Invalid,
    NotFound,
    Unavailable,
)
from bridges.iqstore import IqstoreBridge
from bridges.iqstore.client import IqstoreClient, chat_page
from bridges.iqstore.config import IqstoreSettings
from bridges.iqstore.mapping import LOCAL_ID_FLOOR, local_id_for
from bridges.registry import BridgeDeps, create_bridge
from bridges.state import BridgeState
from tests.bridges.contract import HarnessOptions
from tests.bridges.harness_plusofon import bridge_state_database

ANNA = CustomerIdentity(customer_ref="1001", full_name="Anna", username="anna")
BORIS = CustomerIdentity(customer_ref="1002", full_name="Boris")
AGENT = AgentIdentity(agent_ref="501", full_name="Olga")
SEND = "/chats/channel/send/support"
HISTORY = "/chats/channel/messages/support"


def test_settings() -> None:
    base = {"IQSTORE_PUBLIC_BASE_URL": "https://chat.example/", "IQSTORE_CHANNEL": "support"}
    settings = IqstoreSettings.from_env(base)
    assert settings.public_api_url == "https://chat.example/public/api/v1"
    assert not settings.agent_side and settings.credentials_for("1") is None
    with pytest.raises(ValueError, match="IQSTORE_CHANNEL"):
        IqstoreSettings.from_env({"IQSTORE_PUBLIC_BASE_URL": "https://chat.example"})
    with pytest.raises(ValueError, match="both") as raised:
        IqstoreSettings.from_env(base | {"IQSTORE_SERVICE_TOKEN": "svc-secret-1"})
    assert "svc-secret-1" not in str(raised.value)
    with pytest.raises(ValueError, match="customer_ref") as raised:
        IqstoreSettings.from_env(base | {"IQSTORE_INTEGRATION_CREDENTIALS": "shared-secret"})
    assert "shared-secret" not in str(raised.value)
    integrated = IqstoreSettings.from_env(
        base | {"IQSTORE_INTEGRATION_CREDENTIALS": "tg:{customer_ref}:k3y"})
    assert integrated.credentials_for("1001") == "tg:1001:k3y"


def test_local_ids_are_stable_and_out_of_the_clients_range() -> None:
    assert local_id_for("post:5", 0) == local_id_for("post:5", 0)
    assert local_id_for("post:5", 0) != local_id_for("post:5", 1)
    assert local_id_for("post:5", 0) != local_id_for("post:6", 0)
    for local_id in (local_id_for("post:5", 0), local_id_for(None, 0)):
        assert LOCAL_ID_FLOOR <= local_id < 2**53  # above ms timestamps, JS-safe


async def test_a_200_without_ok_is_not_a_success() -> None:
    settings = IqstoreSettings.from_env({"IQSTORE_PUBLIC_BASE_URL": "http://iq.test",
                                         "IQSTORE_CHANNEL": "support"})
    client = IqstoreClient(settings, transport=httpx.MockTransport(
        lambda request: httpx.Response(200, json={"Result": [{"Id": 1}]})))
    try:
        with pytest.raises(Unavailable, match="OK flag"):
            await client.send("token", local_id=LOCAL_ID_FLOOR, text="hi")
    finally:
        await client.aclose()


# -- against the fake --------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def iqstore(clock: Clock) -> AsyncIterator[FakeIqstore]:
    async with FakeIqstore(clock=clock) as fake:
        yield fake


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Any]:
    async with bridge_state_database(HarnessOptions(tmp_path=tmp_path)) as made:
        yield made


@pytest.fixture
async def bridge(iqstore: FakeIqstore, engine: Any, clock: Clock
                 ) -> AsyncIterator[IqstoreBridge]:
    made = build(iqstore, engine, clock, agent_side=True)
    yield made
    await made.aclose()


def build(iqstore: FakeIqstore, engine: Any, clock: Clock, *, agent_side: bool = False,
          **env: str) -> IqstoreBridge:
    settings = IqstoreSettings.from_env(iqstore.env(agent_side=agent_side, **env))
    return IqstoreBridge(IqstoreClient(settings), BridgeState(engine, "iqstore"), settings,
                         engine, clock=clock)


async def open_conversation(bridge: IqstoreBridge, customer: CustomerIdentity = ANNA,
                            text: str = "Where is my order?", key: str | None = None) -> str:
    ticket = await bridge.create_ticket(NewTicket(customer, "", text, idempotency_key=key))
    return ticket.remote_ticket_id


async def start(bridge: IqstoreBridge) -> str:
    cursor = (await bridge.fetch_changes(None)).cursor
    assert cursor is not None
    return cursor


def messages(events: Any) -> list[tuple[str, str, str | None]]:
    return [(e.message.author_kind.value, e.message.text, e.message.origin_key)
            for e in events if isinstance(e, MessageAdded)]


async def test_the_registry_builds_the_bridge_with_its_capabilities(
    iqstore: FakeIqstore, engine: Any
) -> None:
    customer_side = await create_bridge("iqstore", BridgeDeps(engine=engine, env=iqstore.env()))
    both = await create_bridge("iqstore", BridgeDeps(engine=engine,
                                                     env=iqstore.env(agent_side=True)))
    try:
        assert Capability.REPLY_AS_AGENT not in customer_side.capabilities
        assert both.capabilities - customer_side.capabilities == {Capability.REPLY_AS_AGENT}
        for absent in (Capability.NOTES, Capability.ASSIGN, Capability.PRIORITY,
                       Capability.CLOSE_REOPEN, Capability.KNOWLEDGE_BASE):
            assert absent not in both.capabilities
    finally:
        await customer_side.aclose()
        await both.aclose()


async def test_one_client_per_customer_with_its_token_kept_quiet(
    iqstore: FakeIqstore, bridge: IqstoreBridge, engine: Any, caplog: pytest.LogCaptureFixture
) -> None:
    for logger in ("deskbridge", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=logger)
    first = await open_conversation(bridge, ANNA, "one")
    second = await open_conversation(bridge, ANNA, "two")
    other = await open_conversation(bridge, BORIS, "three")

    assert first.split(":")[0] == second.split(":")[0] != other.split(":")[0]
    assert [c.name for c in iqstore.clients.values()] == ["Anna (@anna)", "Boris"]
    anna = iqstore.clients[int(first.split(":")[0])]
    record = json.loads(await BridgeState(engine, "iqstore").get(f"client:{anna.id}") or "{}")
    assert record["token"] in anna.sessions
    assert all(token not in caplog.text for token in anna.issued)


async def test_an_expired_session_is_renewed(iqstore: FakeIqstore,
                                             bridge: IqstoreBridge) -> None:
    conversation = await open_conversation(bridge)
    iqstore.expire_sessions()
    await bridge.post_customer_message(conversation, ANNA, "still here")
    client_id = int(conversation.split(":")[0])
    assert iqstore.texts(client_id)[-1] == "still here"
    assert len(iqstore.clients[client_id].issued) == 2


async def test_integration_auth_signs_customers_in(iqstore: FakeIqstore, engine: Any,
                                                   clock: Clock) -> None:
    bridge = build(iqstore, engine, clock,
                   IQSTORE_INTEGRATION_CREDENTIALS="tg:{customer_ref}:k3y")
    try:
        conversation = await open_conversation(bridge)
        client = iqstore.clients[int(conversation.split(":")[0])]
        assert client.credentials == "tg:1001:k3y"
        iqstore.expire_sessions()
        await bridge.post_customer_message(conversation, ANNA, "after expiry")
        assert iqstore.texts(client.id)[-1] == "after expiry"
        assert len(iqstore.clients) == 1
    finally:
        await bridge.aclose()


async def test_a_retried_send_reuses_its_local_id(iqstore: FakeIqstore,
                                                  bridge: IqstoreBridge) -> None:
    conversation = await open_conversation(bridge)
    client_id = int(conversation.split(":")[0])
    iqstore.fail_next(SEND, after=True)  # stored, but the answer is lost
    with pytest.raises(Unavailable):
        await bridge.post_customer_message(conversation, ANNA, "once", idempotency_key="post:3")
    again = await bridge.post_customer_message(conversation, ANNA, "once",
                                               idempotency_key="post:3")

    [stored] = [m for m in iqstore.chats[client_id] if m["Text"] == "once"]
    assert stored["LocalId"] == local_id_for("post:3", 0)
    assert again.remote_message_id == str(stored["Id"])
    sends = iqstore.count(SEND)
    assert (await bridge.post_customer_message(conversation, ANNA, "once",
                                               idempotency_key="post:3")) == again
    assert iqstore.count(SEND) == sends


async def test_files_are_uploaded_then_sent_by_file_id(iqstore: FakeIqstore,
                                                       bridge: IqstoreBridge) -> None:
    conversation = await open_conversation(bridge)
    cursor = await start(bridge)
    files = [Attachment("scan.pdf", "application/pdf", data=b"%PDF"),
             Attachment("photo.jpg", "image/jpeg", kind="photo", data=b"\xff\xd8")]
    sent = await bridge.post_customer_message(conversation, ANNA, "both files", files,
                                              idempotency_key="post:4")
    chat = iqstore.chats[int(conversation.split(":")[0])]
    assert [(m["Payload"], m["Text"]) for m in chat[-2:]] == [("file", "both files"),
                                                             ("file", "")]
    assert [iqstore.files[m["FileId"]].type for m in chat[-2:]] == ["file", "image"]
    assert sent.remote_message_id == str(chat[-2]["Id"])

    changes = await bridge.fetch_changes(cursor)
    got = [(e.message.text, [a.file_name for a in e.message.attachments], e.message.origin_key)
           for e in changes.events if isinstance(e, MessageAdded)]
    assert got == [("both files", ["scan.pdf"], "post:4"), ("", ["photo.jpg"], "post:4")]


async def test_new_messages_are_read_back_to_the_last_seen(iqstore: FakeIqstore,
                                                           bridge: IqstoreBridge) -> None:
    conversation = await open_conversation(bridge)
    client_id = int(conversation.split(":")[0])
    cursor = await start(bridge)
    for number in range(120):
        iqstore.agent_replies(client_id, f"part {number}")
    iqstore.notice(client_id)  # nothing to show
    iqstore.notice(client_id, "Chat moved to the billing team")
    reads = iqstore.count(HISTORY)

    changes = await bridge.fetch_changes(cursor)

    assert iqstore.count(HISTORY) - reads == 3  # 50 + 50 + the rest, newest first
    got = messages(changes.events)
    assert got[:120] == [("agent", f"part {n}", None) for n in range(120)]
    assert got[120:] == [("system", "Chat moved to the billing team", None)]
    assert all(e.message.remote_ticket_id == conversation for e in changes.events
               if isinstance(e, MessageAdded))
    assert changes.cursor is not None
    assert list((await bridge.fetch_changes(changes.cursor)).events) == []


async def test_one_unreadable_message_stops_nothing_else(
    iqstore: FakeIqstore, bridge: IqstoreBridge, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 13: logged with its id and skipped; the page is still full, so
    paging back goes on past it."""
    conversation = await open_conversation(bridge)
    client_id = int(conversation.split(":")[0])
    cursor = await start(bridge)
    ids = [iqstore.agent_replies(client_id, f"part {number}") for number in range(60)]
    iqstore.unreadable.add(ids[30])

    changes = await bridge.fetch_changes(cursor)

    assert messages(changes.events) == [("agent", f"part {n}", None) for n in range(60)
                                        if n != 30]
    assert f"unreadable iqstore message (id {ids[30]}" in caplog.text


PAGES: list[tuple[str, dict[str, Any], list[int], int]] = [
    ("the seed's shape", {"OK": True, "Result": [{"Id": 2, "CreatedAt": 5}, {"Id": 1}],
                          "Rels": {"Clients": [{"Id": 11, "Name": "Anna"}]}}, [1, 2], 2),
    ("Result null", {"OK": True, "Result": None}, [], 0),
    ("Result absent", {"OK": True}, [], 0),
    ("Result empty, Rels null", {"OK": True, "Result": [], "Rels": None}, [], 0),
    ("one unreadable message", {"OK": True, "Result": [{"Id": 1}, {"Id": 2, "CreatedAt": "x"},
                                                       "oops", {"Id": 3}]}, [1, 3], 4),
    ("one unreadable related file", {"OK": True, "Result": [{"Id": 1, "FileId": "f"}],
                                     "Rels": {"Files": [{"Id": None}, {"Id": "f"}]}}, [1], 1),
]


@pytest.mark.parametrize(("body", "ids", "entries"), [case[1:] for case in PAGES],
                         ids=[case[0] for case in PAGES])
def test_chat_pages(body: dict[str, Any], ids: list[int], entries: int) -> None:
    page = chat_page(body, "chats/channel/messages/support")
    assert [message.id for message in page.messages] == ids
    assert page.entries == entries
    if body.get("Rels") and body["Rels"].get("Files"):
        assert [file.id for file in page.rels.files] == ["f"]


async def test_quiet_chats_are_read_less_often(iqstore: FakeIqstore, bridge: IqstoreBridge,
                                               clock: Clock) -> None:
    busy = await open_conversation(bridge, ANNA)
    await open_conversation(bridge, BORIS)
    cursor = await start(bridge)
    clock.now += 3600  # an hour of silence
    changes = await bridge.fetch_changes(cursor)  # both due: read, found quiet
    assert changes.cursor is not None
    reads = iqstore.count(HISTORY)

    clock.now += 15
    quiet = await bridge.fetch_changes(changes.cursor)
    assert iqstore.count(HISTORY) == reads  # neither is due yet
    assert quiet.cursor is not None

    # The bridge writes to one: that chat is due at once; the other still is not.
    await bridge.post_customer_message(busy, ANNA, "any news?")
    clock.now += 15
    after_send = await bridge.fetch_changes(quiet.cursor)
    assert iqstore.count(HISTORY) == reads + 1
    assert messages(after_send.events) == [("customer", "any news?", None)]

    # Past the quiet interval (a tenth of the silence), the other is read again.
    assert after_send.cursor is not None
    clock.now += 400
    await bridge.fetch_changes(after_send.cursor)
    assert iqstore.count(HISTORY) == reads + 3


async def test_the_read_budget_leaves_the_rest_for_the_next_poll(
    iqstore: FakeIqstore, engine: Any, clock: Clock
) -> None:
    bridge = build(iqstore, engine, clock, IQSTORE_POLL_BUDGET="2")
    try:
        cursor = await start(bridge)
        for number in range(3):
            await open_conversation(bridge, CustomerIdentity(str(number), f"C{number}"))
        first = await bridge.fetch_changes(cursor)
        assert first.more and first.cursor is not None
        second = await bridge.fetch_changes(first.cursor)
        assert not second.more
        opened = [e for e in [*first.events, *second.events] if isinstance(e, TicketChanged)]
        texts = messages([*first.events, *second.events])
        assert (len(opened), len(texts)) == (3, 3)
    finally:
        await bridge.aclose()


async def test_answers_go_to_the_newest_conversation(iqstore: FakeIqstore,
                                                     bridge: IqstoreBridge) -> None:
    older = await open_conversation(bridge, ANNA, "first problem")
    client_id = int(older.split(":")[0])
    cursor = await start(bridge)
    iqstore.agent_replies(client_id, "answer to the first")
    newer = await open_conversation(bridge, ANNA, "second problem", key="create:2")
    iqstore.agent_replies(client_id, "answer to the second")

    changes = await bridge.fetch_changes(cursor)

    assert [(e.ticket.remote_ticket_id, "opened") for e in changes.events
            if isinstance(e, TicketChanged)] == [(newer, "opened")]
    assert [(e.message.remote_ticket_id, e.message.text) for e in changes.events
            if isinstance(e, MessageAdded)] == [
        (older, "answer to the first"),
        (newer, "second problem"),
        (newer, "answer to the second"),
    ]


async def test_a_conversation_found_late_replays_its_opening(
    iqstore: FakeIqstore, bridge: IqstoreBridge, engine: Any
) -> None:
    first = await open_conversation(bridge, ANNA)
    client_id = int(first.split(":")[0])
    cursor = await start(bridge)
    # The opening of a second conversation is sent and the chat read past
    # it before its registry row is written (the window inside create_ticket).
    opening = iqstore.seed_message(client_id, "new problem", local_id=local_id_for("c:9", 0))
    await BridgeState(engine, "iqstore").set(f"act:{client_id}",
                                             json.dumps({"last": opening}))
    passed = await bridge.fetch_changes(cursor)
    assert passed.cursor is not None
    await BridgeState(engine, "iqstore").set(f"seg:{client_id}:{opening}", json.dumps(
        {"customer": "1001", "subject": "new problem", "text": "new problem", "key": "c:9",
         "at": 0}))

    changes = await bridge.fetch_changes(passed.cursor)

    assert [type(e).__name__ for e in changes.events] == ["TicketChanged", "MessageAdded"]
    assert messages(changes.events) == [("customer", "new problem", "c:9")]
    [replayed] = [e for e in changes.events if isinstance(e, MessageAdded)]
    assert replayed.message.remote_ticket_id == f"{client_id}:{opening}"


async def test_agent_replies_go_to_a_known_ticket(iqstore: FakeIqstore,
                                                  bridge: IqstoreBridge, clock: Clock) -> None:
    conversation = await open_conversation(bridge)
    client_id = int(conversation.split(":")[0])
    with pytest.raises(Invalid, match="no iqstore ticket"):
        await bridge.post_agent_reply(conversation, AGENT, "too early")

    cursor = await start(bridge)
    ticket_id = iqstore.open_ticket(client_id)
    iqstore.agent_replies(client_id, "we have a ticket now", ticket_id=ticket_id)
    learned = await bridge.fetch_changes(cursor)  # the chat links the conversation to it
    assert learned.cursor is not None

    reply = await bridge.post_agent_reply(conversation, AGENT, "on it", idempotency_key="post:8")
    again = await bridge.post_agent_reply(conversation, AGENT, "on it", idempotency_key="post:8")
    [written] = [m for m in iqstore.ticket_messages.values() if m["Text"] == "Olga: on it"]
    assert written["TicketId"] == ticket_id
    assert reply == again and reply.remote_message_id == f"t{written['Id']}"

    # Stored, but the answer was lost: the retry finds the reply in the chat.
    iqstore.fail_next("/api/tickets/create_message", after=True)
    with pytest.raises(Unavailable):
        await bridge.post_agent_reply(conversation, AGENT, "once", idempotency_key="post:9")
    recovered = await bridge.post_agent_reply(conversation, AGENT, "once",
                                              idempotency_key="post:9")
    [mirrored] = [m for m in iqstore.chats[client_id] if m["Text"] == "Olga: once"]
    assert recovered.remote_message_id == str(mirrored["Id"])
    assert [m["Text"] for m in iqstore.ticket_messages.values()].count("Olga: once") == 1

    clock.now += 10  # the chat was read a moment ago
    changes = await bridge.fetch_changes(learned.cursor)
    assert messages(changes.events) == [("agent", "Olga: on it", "post:8"),
                                        ("agent", "Olga: once", "post:9")]
    with pytest.raises(Invalid):
        await bridge.post_agent_reply(conversation, AGENT, "file", [Attachment("a", data=b"")])


async def test_what_iqstore_cannot_do_is_refused(bridge: IqstoreBridge) -> None:
    for odd in ("", "12", "a:b", "1:2:3", "1:999"):
        with pytest.raises(NotFound):
            await bridge.get_ticket(odd)
    conversation = await open_conversation(bridge)
    with pytest.raises(Invalid):
        await bridge.post_customer_message(conversation, BORIS, "not my conversation")
    with pytest.raises(Invalid):
        await bridge.post_note(conversation, AGENT, "note")
    with pytest.raises(Invalid):
        await bridge.fetch_changes('{"v": 2}')
    assert (await bridge.get_ticket(conversation)).customer_ref == ANNA.customer_ref
    assert await bridge.find_agent("olga") is None
    report = await bridge.check()
    assert report.ok and "agent replies go to iqstore tickets" in report.lines[1]


async def test_check_fails_when_iqstore_is_not_there(engine: Any, clock: Clock) -> None:
    settings = IqstoreSettings.from_env({"IQSTORE_PUBLIC_BASE_URL": "http://iq.test",
                                         "IQSTORE_CHANNEL": "support"})
    client = IqstoreClient(settings, transport=httpx.MockTransport(
        lambda request: httpx.Response(502, text="Bad Gateway")))
    bridge = IqstoreBridge(client, BridgeState(engine, "iqstore"), settings, engine, clock=clock)
    try:
        report = await bridge.check()
    finally:
        await bridge.aclose()
    assert not report.ok and "Unavailable" in report.lines[0]
