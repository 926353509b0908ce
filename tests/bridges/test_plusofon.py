"""The Plusofon bridge beyond the contract: its error table, the list's
shapes, signing in, and a poll that reads only what changed."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.sandbox.plusofon import ACCOUNT_USER_ID, FakePlusofon, FakePost
from bridges.base import (
    Attachment,
    AuthorKind,
    CustomerIdentity,
    MessageAdded,
    NewTicket,
    TicketChanged,
    TicketStatus,
    TicketUpdate,
)
from bridges.errors import (
    AuthFailed,
    Invalid,
    NotFound,
    Unavailable,
)
from bridges.plusofon import PlusofonBridge
from bridges.plusofon.config import PlusofonSettings
from bridges.plusofon.models import TicketFull, parse_ticket_list
from bridges.registry import BridgeDeps, create_bridge
from tests.bridges.contract import LOCAL_AGENT, HarnessOptions
from tests.bridges.harness_plusofon import bridge_state_database

CUSTOMER = CustomerIdentity(customer_ref="tg:1001", full_name="Anna Customer")


@pytest.mark.parametrize(
    ("body", "ids"),
    [
        ({}, []),
        ([], []),
        ({"ticket": []}, []),
        ({"ticket": {"@attributes": {"id": "7"}, "subject": {}, "ownerstaffname": []}}, ["7"]),
        ({"ticket": [{"@attributes": {"id": "7"}}, {"displayid": "8"}]}, ["7", "8"]),
        # Empty in the other shapes an XML document turned into JSON takes.
        ({"ticket": {}}, []),
        ({"ticket": ""}, []),
        ({"ticket": [{}]}, []),
        # One that cannot be read, or names no ticket, is skipped (and logged).
        ({"ticket": [{"@attributes": {"id": "7"}}, {"@attributes": {"id": "8"},
                                                     "subject": {"b": "1"}},
                     {"displayid": "9"}]}, ["7", "9"]),
        ({"ticket": [{"subject": ""}, {"displayid": "9"}]}, ["9"]),
        ({"ticket": ["not a ticket", {"displayid": "9"}]}, ["9"]),
    ],
)
def test_the_list_is_one_object_or_many(body: Any, ids: list[str]) -> None:
    tickets = parse_ticket_list(body)
    assert [ticket.ticket_id for ticket in tickets] == ids
    assert all(ticket.subject == "" and ticket.lastactivity == 0 for ticket in tickets)


def test_one_unreadable_post_leaves_the_others(caplog: pytest.LogCaptureFixture) -> None:
    full = TicketFull.model_validate({"id": "5", "posts": [
        {"id": "1", "text": "hello", "author": {"id": "9", "name": "me"}},
        {"id": "2", "text": "odd", "author": "?"},
        {"text": "no id"},
        {"id": "3", "text": "bye", "attachments": "scan.pdf"}]})
    assert [post.id for post in full.posts] == ["1", "3"]
    assert "unreadable Plusofon post (id 2" in caplog.text
    assert TicketFull.model_validate({"id": "5", "posts": {}}).posts == []
    single = TicketFull.model_validate({"id": "5", "posts": {"id": "1", "text": "x"}})
    assert [post.id for post in single.posts] == ["1"]


def test_settings_need_credentials_and_never_echo_secrets() -> None:
    with pytest.raises(ValueError, match="PLUSOFON_TOKEN"):
        PlusofonSettings.from_env({})
    with pytest.raises(ValueError, match="PLUSOFON_BASE_URL") as raised:
        PlusofonSettings.from_env({"PLUSOFON_BASE_URL": "ftp://x", "PLUSOFON_EMAIL": "a@b",
                                   "PLUSOFON_PASSWORD": "hunter2-secret"})
    assert "hunter2" not in str(raised.value)
    settings = PlusofonSettings.from_env({"PLUSOFON_TOKEN": "t0k3n", "PLUSOFON_EMAIL": ""})
    assert (settings.base_url, settings.client, settings.can_sign_in) == (
        "https://restapi.plusofon.ru", "10553", False)
    assert "t0k3n" not in repr(settings)


# -- against the fake --------------------------------------------------------------------


@pytest.fixture
async def plusofon() -> AsyncIterator[FakePlusofon]:
    async with FakePlusofon() as fake:
        yield fake


@pytest.fixture
async def engine_path(tmp_path: Path) -> AsyncIterator[Any]:
    async with bridge_state_database(HarnessOptions(tmp_path=tmp_path)) as engine:
        yield engine


async def make_bridge(engine: Any, env: dict[str, str], **deps: Any) -> PlusofonBridge:
    bridge = await create_bridge("plusofon", BridgeDeps(engine=engine, env=env, **deps))
    assert isinstance(bridge, PlusofonBridge)
    return bridge


@pytest.fixture
async def bridge(plusofon: FakePlusofon, engine_path: Any) -> AsyncIterator[PlusofonBridge]:
    made = await make_bridge(engine_path, plusofon.env())
    yield made
    await made.aclose()


async def open_ticket(bridge: PlusofonBridge, subject: str = "SIP is down", *,
                      key: str | None = None, files: tuple[Attachment, ...] = ()) -> str:
    ticket = await bridge.create_ticket(NewTicket(CUSTOMER, subject, f"{subject}, since 9:00",
                                                  attachments=files, idempotency_key=key))
    return ticket.remote_ticket_id


async def start(bridge: PlusofonBridge) -> str:
    cursor = (await bridge.fetch_changes(None)).cursor
    assert cursor is not None
    return cursor


def described(events: Any) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for event in events:
        if isinstance(event, TicketChanged):
            out.append(("ticket", event.ticket.remote_ticket_id, event.ticket.status.value))
        else:
            message = event.message
            out.append((message.author_kind.value, message.remote_ticket_id, message.text))
    return out


async def test_the_list_goes_as_a_json_body_on_a_get(engine_path: Any) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    bridge = await make_bridge(engine_path, {"PLUSOFON_TOKEN": "tok", "PLUSOFON_CLIENT": "77"},
                               transport=httpx.MockTransport(answer))
    try:
        await bridge.fetch_changes(None)
    finally:
        await bridge.aclose()
    [request] = seen
    assert (request.method, request.url.path, request.url.params["state"]) == (
        "GET", "/api/v1/ticket", "true")
    assert json.loads(request.content) == {"state": "true"}
    assert request.headers["Client"] == "77"
    assert request.headers["Authorization"] == "Bearer tok"
    assert request.headers["Content-Type"] == "application/json"


async def test_an_expired_token_is_renewed_once(plusofon: FakePlusofon,
                                                bridge: PlusofonBridge) -> None:
    await start(bridge)
    plusofon.expire_tokens()
    await start(bridge)
    await start(bridge)
    assert plusofon.logins == 2  # the first sign-in, and one after the expiry


async def test_a_refused_ready_token_fails_as_auth(plusofon: FakePlusofon,
                                                  engine_path: Any) -> None:
    bridge = await make_bridge(engine_path, plusofon.env(token=True))
    try:
        plusofon.expire_tokens()
        with pytest.raises(AuthFailed):
            await bridge.fetch_changes(None)
    finally:
        await bridge.aclose()


async def test_check_reports_bad_credentials_without_the_password(
    plusofon: FakePlusofon, engine_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bridge = await make_bridge(engine_path, plusofon.env(PLUSOFON_PASSWORD="wrong-secret-42"))
    try:
        report = await bridge.check()
    finally:
        await bridge.aclose()
    assert not report.ok
    assert "CredentialsRefused" in report.lines[0] and "PLUSOFON_PASSWORD" in report.lines[0]
    assert "wrong-secret-42" not in " ".join(report.lines) + caplog.text


async def test_only_changed_tickets_are_read(plusofon: FakePlusofon,
                                             bridge: PlusofonBridge) -> None:
    first, second, third = [await open_ticket(bridge, f"ticket {n}") for n in range(3)]
    cursor = await start(bridge)
    plusofon.support_answers(second, "Looking into it")
    reads = plusofon.count("GET", "api/v1/ticket/")

    changes = await bridge.fetch_changes(cursor)

    assert plusofon.count("GET", "api/v1/ticket/") == reads + 1
    assert described(changes.events) == [("agent", second, "Looking into it")]
    [event] = changes.events
    assert isinstance(event, MessageAdded) and event.message.author_name == "Оператор"
    assert changes.cursor is not None
    quiet = await bridge.fetch_changes(changes.cursor)
    assert (list(quiet.events), plusofon.count("GET", "api/v1/ticket/")) == ([], reads + 1)
    del first, third


async def test_a_poll_over_an_unreadable_post_delivers_the_others(
    plusofon: FakePlusofon, bridge: PlusofonBridge, caplog: pytest.LogCaptureFixture
) -> None:
    ticket = await open_ticket(bridge, "SIP is down")
    cursor = await start(bridge)
    plusofon.support_answers(ticket, "Looking into it")
    plusofon.make_unreadable(plusofon.support_answers(ticket, "garbled"))
    plusofon.support_answers(ticket, "Fixed")

    changes = await bridge.fetch_changes(cursor)

    assert described(changes.events) == [("agent", ticket, "Looking into it"),
                                         ("agent", ticket, "Fixed")]
    assert "unreadable Plusofon post" in caplog.text


async def test_the_ticket_says_which_telegram_customer_asks(
    plusofon: FakePlusofon, bridge: PlusofonBridge
) -> None:
    """Issue 13: every customer writes through the one company account, so
    the ticket names them for Plusofon's support; the bot reads the opening
    back without that line."""
    ivan = CustomerIdentity(customer_ref="424242", full_name="Ivan  Petrov", username="ivanp")
    cursor = await start(bridge)
    ticket = await bridge.create_ticket(NewTicket(ivan, "SIP", "SIP is down",
                                                  idempotency_key="create:7"))
    anonymous = await open_ticket(bridge, "no username")

    stored = plusofon.tickets[int(ticket.remote_ticket_id)].posts[0].text
    assert stored == "Telegram: Ivan Petrov, @ivanp, id 424242\n\nSIP is down"
    assert plusofon.tickets[int(anonymous)].posts[0].text.startswith(
        "Telegram: Anna Customer, id tg:1001\n\n")
    changes = await bridge.fetch_changes(cursor)
    opening = [e.message for e in changes.events if isinstance(e, MessageAdded)
               and e.message.remote_ticket_id == ticket.remote_ticket_id]
    assert [(m.text, m.origin_key) for m in opening] == [("SIP is down", "create:7")]


async def test_own_posts_carry_their_keys(plusofon: FakePlusofon,
                                          bridge: PlusofonBridge) -> None:
    cursor = await start(bridge)
    ticket_id = await open_ticket(bridge, key="create:1")
    await bridge.post_customer_message(ticket_id, CUSTOMER, "more details",
                                       idempotency_key="post:2")
    # The account holder writes in Plusofon's own cabinet: a customer post too.
    ticket = plusofon.tickets[int(ticket_id)]
    ticket.posts.append(FakePost(99_999, ticket.activity, "from the cabinet",
                                 {"id": ACCOUNT_USER_ID, "name": "owner"}))
    ticket.activity += 1

    changes = await bridge.fetch_changes(cursor)

    keys = [(e.message.text, e.message.origin_key, e.message.author_kind)
            for e in changes.events if isinstance(e, MessageAdded)]
    assert keys == [("SIP is down, since 9:00", "create:1", AuthorKind.CUSTOMER),
                    ("more details", "post:2", AuthorKind.CUSTOMER),
                    ("from the cabinet", None, AuthorKind.CUSTOMER)]
    [opened] = [e for e in changes.events if isinstance(e, TicketChanged)]
    assert (opened.origin_key, opened.ticket.customer_ref) == ("create:1", "tg:1001")


async def test_closing_is_detected_from_the_closed_list(plusofon: FakePlusofon,
                                                        bridge: PlusofonBridge) -> None:
    quiet, talkative = await open_ticket(bridge, "quiet"), await open_ticket(bridge, "talk")
    cursor = await start(bridge)
    plusofon.close(quiet)
    plusofon.support_answers(talkative, "Fixed, closing.")
    plusofon.close(talkative)
    reads = plusofon.count("GET", "api/v1/ticket/")

    changes = await bridge.fetch_changes(cursor)

    # The quiet one needs no read: the closed list says all; the other's last answer comes first.
    assert plusofon.count("GET", "api/v1/ticket/") == reads + 1
    assert described(changes.events) == [
        ("ticket", quiet, "closed"),
        ("agent", talkative, "Fixed, closing."),
        ("ticket", talkative, "closed"),
    ]
    assert (await bridge.get_ticket(quiet)).status is TicketStatus.CLOSED

    # Reopened with a new answer: only what is new is reported.
    assert changes.cursor is not None
    plusofon.reopen(quiet)
    plusofon.support_answers(quiet, "Reopening: one more thing")
    again = await bridge.fetch_changes(changes.cursor)
    assert described(again.events) == [("ticket", quiet, "open"),
                                       ("agent", quiet, "Reopening: one more thing")]


async def test_closing_is_detected_from_the_status_too(
    plusofon: FakePlusofon, bridge: PlusofonBridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticket_id = await open_ticket(bridge)
    cursor = await start(bridge)
    plusofon.support_answers(ticket_id, "Done")
    # The list still shows it open; the ticket itself says `status: false`.
    full = plusofon._full
    monkeypatch.setattr(plusofon, "_full", lambda ticket: {**full(ticket), "status": False})

    changes = await bridge.fetch_changes(cursor)

    assert described(changes.events) == [("agent", ticket_id, "Done"),
                                         ("ticket", ticket_id, "closed")]


async def test_tickets_open_before_the_start_report_only_new_posts(
    plusofon: FakePlusofon, bridge: PlusofonBridge
) -> None:
    old = plusofon.seed_ticket("Opened in the cabinet", "first words")
    plusofon.support_answers(old, "an old answer")
    cursor = await start(bridge)
    plusofon.support_answers(old, "a new answer")

    changes = await bridge.fetch_changes(cursor)

    assert described(changes.events) == [("agent", str(old), "a new answer")]


async def test_the_read_budget_leaves_the_rest_for_the_next_poll(
    plusofon: FakePlusofon, engine_path: Any
) -> None:
    bridge = await make_bridge(engine_path, plusofon.env(PLUSOFON_POLL_BUDGET="2"))
    try:
        tickets = [await open_ticket(bridge, f"t{n}") for n in range(3)]
        cursor = await start(bridge)
        for ticket_id in tickets:
            plusofon.support_answers(ticket_id, f"answer to {ticket_id}")
        first = await bridge.fetch_changes(cursor)
        assert (len(first.events), first.more) == (2, True)
        assert first.cursor is not None
        second = await bridge.fetch_changes(first.cursor)
        assert (len(second.events), second.more) == (1, False)
        texts = [e.message.text for e in [*first.events, *second.events]
                 if isinstance(e, MessageAdded)]
        assert sorted(texts) == sorted(f"answer to {t}" for t in tickets)
    finally:
        await bridge.aclose()


async def test_a_deleted_ticket_is_forgotten(plusofon: FakePlusofon,
                                             bridge: PlusofonBridge) -> None:
    ticket_id = await open_ticket(bridge)
    cursor = await start(bridge)
    del plusofon.tickets[int(ticket_id)]
    changes = await bridge.fetch_changes(cursor)
    assert list(changes.events) == []
    assert changes.cursor is not None and ticket_id not in changes.cursor


async def test_a_create_whose_answer_was_lost_is_not_repeated(
    plusofon: FakePlusofon, bridge: PlusofonBridge
) -> None:
    plusofon.fail_next("POST", "api/v1/ticket", 500, after=True)
    with pytest.raises(Unavailable):
        await open_ticket(bridge, key="create:7")
    retried = await open_ticket(bridge, key="create:7")
    again = await open_ticket(bridge, key="create:7")
    assert list(plusofon.tickets) == [int(retried)] and again == retried


async def test_an_answer_whose_answer_was_lost_is_not_repeated(
    plusofon: FakePlusofon, bridge: PlusofonBridge
) -> None:
    ticket_id = await open_ticket(bridge)
    plusofon.fail_next("PUT", "api/v1/ticket/answer", 502, "Bad Gateway", after=True)
    with pytest.raises(Unavailable):
        await bridge.post_customer_message(ticket_id, CUSTOMER, "once", idempotency_key="post:9")
    retried = await bridge.post_customer_message(ticket_id, CUSTOMER, "once",
                                                 idempotency_key="post:9")
    assert plusofon.tickets[int(ticket_id)].post_texts().count("once") == 1
    assert retried.remote_message_id == str(plusofon.tickets[int(ticket_id)].posts[-1].id)


async def test_files_go_base64_and_a_failed_one_alone_is_retried(
    plusofon: FakePlusofon, bridge: PlusofonBridge
) -> None:
    ticket_id = await open_ticket(bridge)
    files = [Attachment("a.txt", "text/plain", data=b"alpha"),
             Attachment("b.txt", "text/plain", data=b"beta")]
    plusofon.fail_next("POST", "api/v1/ticket/attachment", 500, times=1)
    with pytest.raises(Unavailable):
        await bridge.post_customer_message(ticket_id, CUSTOMER, "", files, idempotency_key="p:1")
    message = await bridge.post_customer_message(ticket_id, CUSTOMER, "", files,
                                                 idempotency_key="p:1")
    post = plusofon.tickets[int(ticket_id)].posts[-1]
    assert (post.text, post.files) == ("📎 a.txt, b.txt", {"a.txt": b"alpha", "b.txt": b"beta"})
    assert message.remote_message_id == str(post.id)
    with pytest.raises(Invalid):
        await bridge.post_customer_message(ticket_id, CUSTOMER, "", [Attachment("c.txt")])


async def test_what_plusofon_cannot_do_is_refused(bridge: PlusofonBridge) -> None:
    with pytest.raises(NotFound):
        await bridge.get_ticket("../etc")
    for call in (bridge.post_agent_reply("1", LOCAL_AGENT, "hi"),
                 bridge.post_note("1", LOCAL_AGENT, "hi"),
                 bridge.update_ticket("1", TicketUpdate(status=TicketStatus.CLOSED)),
                 bridge.refer("1", "sales")):
        with pytest.raises(Invalid):
            await call
    assert await bridge.find_agent("someone") is None
    assert not bridge.missing_contact(CUSTOMER)
