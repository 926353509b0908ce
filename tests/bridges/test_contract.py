"""The provider contract, run against every bridge in `contract.HARNESSES`.

A test skips what a bridge lacks the capability for; the harness pins the
capability set, so a skip is always a declared limitation. Local-desk
specifics that go beyond the contract are at the end of the file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

from bridges.base import (
    AgentIdentity,
    Attachment,
    AuthorKind,
    BridgeBase,
    Capability,
    ChangeEvent,
    CustomerIdentity,
    Erasure,
    HelpdeskBridge,
    MessageAdded,
    NewTicket,
    Priority,
    RemoteMessage,
    RemoteTicket,
    TicketChanged,
    TicketStatus,
    TicketUpdate,
)
from bridges.errors import Invalid, NotFound
from bridges.local import LocalDeskBridge
from bridges.registry import BridgeDeps, available, create_bridge
from tests.bridges.contract import (
    HARNESSES,
    LOCAL_AGENT,
    BridgeHarness,
    BridgeHelpers,
    HarnessOptions,
    LocalDeskHelpers,
    local_desk,
)

CUSTOMER = CustomerIdentity(customer_ref="tg:1001", full_name="Anna Customer", language="en")


@dataclass(frozen=True, slots=True)
class Desk:
    harness: BridgeHarness
    bridge: HelpdeskBridge
    helpers: BridgeHelpers


@pytest.fixture(params=HARNESSES, ids=lambda harness: harness.name)
def harness(request: pytest.FixtureRequest) -> BridgeHarness:
    chosen: BridgeHarness = request.param
    return chosen


@pytest.fixture
async def desk(harness: BridgeHarness, tmp_path: Path) -> AsyncIterator[Desk]:
    async with harness.make(HarnessOptions(tmp_path=tmp_path)) as (bridge, helpers):
        yield Desk(harness, bridge, helpers)


def require(bridge: HelpdeskBridge, *needed: Capability) -> None:
    missing = [capability.value for capability in needed if capability not in bridge.capabilities]
    if missing:
        pytest.skip(f"{bridge.name} lacks {', '.join(missing)}")


async def open_ticket(
    bridge: HelpdeskBridge,
    *,
    subject: str = "Printer on fire",
    text: str = "The printer on floor 3 is on fire.",
    idempotency_key: str | None = None,
    attachments: Sequence[Attachment] = (),
) -> RemoteTicket:
    require(bridge, Capability.CREATE)
    return await bridge.create_ticket(
        NewTicket(
            customer=CUSTOMER,
            subject=subject,
            text=text,
            attachments=attachments,
            idempotency_key=idempotency_key,
        )
    )


async def start_cursor(bridge: HelpdeskBridge) -> str:
    changes = await bridge.fetch_changes(None)
    assert changes.cursor is not None
    return changes.cursor


async def drain(bridge: HelpdeskBridge, cursor: str) -> tuple[list[ChangeEvent], str]:
    """Every change since `cursor`, following `more` across pages."""
    events: list[ChangeEvent] = []
    for _ in range(1000):
        changes = await bridge.fetch_changes(cursor)
        events.extend(changes.events)
        assert changes.cursor is not None
        cursor = changes.cursor
        if not changes.more:
            return events, cursor
    raise AssertionError("fetch_changes kept reporting more")


def messages_of(events: Sequence[ChangeEvent], ticket: RemoteTicket) -> list[RemoteMessage]:
    return [
        change.message
        for change in events
        if isinstance(change, MessageAdded)
        and change.message.remote_ticket_id == ticket.remote_ticket_id
    ]


def ticket_changes_of(events: Sequence[ChangeEvent], ticket: RemoteTicket) -> list[TicketChanged]:
    return [
        change
        for change in events
        if isinstance(change, TicketChanged)
        and change.ticket.remote_ticket_id == ticket.remote_ticket_id
    ]


# -- declaration ---------------------------------------------------------------


async def test_declares_its_capabilities(desk: Desk) -> None:
    bridge = desk.bridge
    assert isinstance(bridge, HelpdeskBridge)
    assert bridge.name == desk.harness.name
    assert all(isinstance(capability, Capability) for capability in bridge.capabilities)
    assert bridge.capabilities == desk.harness.capabilities
    if Capability.DEPARTMENTS not in bridge.capabilities:
        assert list(await bridge.list_departments()) == []


async def test_every_bridge_has_the_one_shape(desk: Desk) -> None:
    assert isinstance(desk.bridge, BridgeBase)
    # Only a desk that keeps the bot's file handle hands it back as its own.
    own = desk.bridge.own_file(Attachment("scan.pdf", ref="telegram-file-id"))
    assert own == ("telegram-file-id" if desk.harness.echoes_attachment_ref else None)


async def test_erasing_a_customer_is_repeatable(desk: Desk) -> None:
    ticket = await open_ticket(desk.bridge, text="My passport is 4510 123456")
    first = await desk.bridge.erase_customer(CUSTOMER.customer_ref, [ticket.remote_ticket_id])
    again = await desk.bridge.erase_customer(CUSTOMER.customer_ref, [ticket.remote_ticket_id])
    assert isinstance(first, Erasure) and isinstance(again, Erasure)
    assert again.messages == 0
    if first.complete:  # the desk's copy is gone, the ticket stays for statistics
        assert first.messages >= 1
        kept = await desk.bridge.get_ticket(ticket.remote_ticket_id)
        assert kept.remote_ticket_id == ticket.remote_ticket_id
        assert "4510" not in kept.subject


async def test_check_reports_ok(desk: Desk) -> None:
    report = await desk.bridge.check()
    assert report.ok, report.lines
    assert report.lines


# -- tickets ---------------------------------------------------------------------


async def test_created_ticket_reads_back(desk: Desk) -> None:
    created = await open_ticket(desk.bridge, subject="VPN is down")

    fetched = await desk.bridge.get_ticket(created.remote_ticket_id)

    assert fetched.remote_ticket_id == created.remote_ticket_id
    assert fetched.number
    assert fetched.subject == "VPN is down"
    assert fetched.status is TicketStatus.OPEN
    assert fetched.customer_ref == CUSTOMER.customer_ref
    for moment in (fetched.created_at, fetched.updated_at):
        assert moment is None or moment.utcoffset() is not None


async def test_unknown_ticket_is_not_found(desk: Desk) -> None:
    bridge, unknown = desk.bridge, desk.helpers.unknown_ticket_id
    agent = desk.helpers.agent

    with pytest.raises(NotFound):
        await bridge.get_ticket(unknown)
    if Capability.REPLY_AS_CUSTOMER in bridge.capabilities:
        with pytest.raises(NotFound):
            await bridge.post_customer_message(unknown, CUSTOMER, "hello?")
    if Capability.REPLY_AS_AGENT in bridge.capabilities:
        with pytest.raises(NotFound):
            await bridge.post_agent_reply(unknown, agent, "hello?")
    if Capability.NOTES in bridge.capabilities:
        with pytest.raises(NotFound):
            await bridge.post_note(unknown, agent, "hello?")
    if Capability.CLOSE_REOPEN in bridge.capabilities:
        with pytest.raises(NotFound):
            await bridge.update_ticket(unknown, TicketUpdate(status=TicketStatus.CLOSED))


async def test_empty_message_is_invalid(desk: Desk) -> None:
    bridge, agent = desk.bridge, desk.helpers.agent
    with pytest.raises(Invalid):
        await open_ticket(bridge, text="")
    ticket = await open_ticket(bridge)

    if Capability.REPLY_AS_CUSTOMER in bridge.capabilities:
        with pytest.raises(Invalid):
            await bridge.post_customer_message(ticket.remote_ticket_id, CUSTOMER, "")
    if Capability.REPLY_AS_AGENT in bridge.capabilities:
        with pytest.raises(Invalid):
            await bridge.post_agent_reply(ticket.remote_ticket_id, agent, "")
    if Capability.NOTES in bridge.capabilities:
        with pytest.raises(Invalid):
            await bridge.post_note(ticket.remote_ticket_id, agent, "")


async def test_create_is_idempotent(desk: Desk) -> None:
    cursor = await start_cursor(desk.bridge)

    first = await open_ticket(desk.bridge, idempotency_key="create-42")
    again = await open_ticket(desk.bridge, idempotency_key="create-42")

    assert again.remote_ticket_id == first.remote_ticket_id
    events, _ = await drain(desk.bridge, cursor)
    assert len(messages_of(events, first)) == 1
    opened = {
        change.message.remote_ticket_id for change in events if isinstance(change, MessageAdded)
    }
    assert opened == {first.remote_ticket_id}


async def test_posting_is_idempotent(desk: Desk) -> None:
    bridge, agent = desk.bridge, desk.helpers.agent
    ticket = await open_ticket(bridge)
    ticket_id = ticket.remote_ticket_id
    cursor = await start_cursor(bridge)

    async def customer(key: str) -> RemoteMessage:
        return await bridge.post_customer_message(ticket_id, CUSTOMER, "one", idempotency_key=key)

    async def reply(key: str) -> RemoteMessage:
        return await bridge.post_agent_reply(ticket_id, agent, "two", idempotency_key=key)

    async def note(key: str) -> RemoteMessage:
        return await bridge.post_note(ticket_id, agent, "three", idempotency_key=key)

    posts = {
        Capability.REPLY_AS_CUSTOMER: customer,
        Capability.REPLY_AS_AGENT: reply,
        Capability.NOTES: note,
    }
    posted = [
        (await post(f"once-{capability}"), await post(f"once-{capability}"))
        for capability, post in posts.items()
        if capability in bridge.capabilities
    ]
    if not posted:
        pytest.skip(f"{bridge.name} cannot post messages")

    for first, again in posted:
        assert again.remote_message_id == first.remote_message_id
    events, _ = await drain(bridge, cursor)
    assert [message.remote_message_id for message in messages_of(events, ticket)] == [
        first.remote_message_id for first, _ in posted
    ]


# -- change feed -------------------------------------------------------------------


async def test_first_fetch_starts_from_now(desk: Desk) -> None:
    before = await open_ticket(desk.bridge, subject="Old news")

    changes = await desk.bridge.fetch_changes(None)

    assert list(changes.events) == []
    assert changes.cursor is not None
    after = await open_ticket(desk.bridge, subject="Fresh")
    events, _ = await drain(desk.bridge, changes.cursor)
    assert messages_of(events, after)
    assert not messages_of(events, before)


async def test_conversation_arrives_in_order(desk: Desk) -> None:
    bridge, agent = desk.bridge, desk.helpers.agent
    cursor = await start_cursor(bridge)
    ticket = await open_ticket(bridge, text="It is broken.")
    expected = [(AuthorKind.CUSTOMER, "It is broken.")]
    if Capability.REPLY_AS_CUSTOMER in bridge.capabilities:
        await bridge.post_customer_message(ticket.remote_ticket_id, CUSTOMER, "Still broken.")
        expected.append((AuthorKind.CUSTOMER, "Still broken."))
    if Capability.REPLY_AS_AGENT in bridge.capabilities:
        await bridge.post_agent_reply(ticket.remote_ticket_id, agent, "Have you tried...")
        expected.append((AuthorKind.AGENT, "Have you tried..."))
    if Capability.NOTES in bridge.capabilities:
        await bridge.post_note(ticket.remote_ticket_id, agent, "Customer seems upset.")
        expected.append((AuthorKind.NOTE, "Customer seems upset."))

    events, cursor = await drain(bridge, cursor)

    messages = messages_of(events, ticket)
    assert [(message.author_kind, message.text) for message in messages] == expected
    assert all(message.remote_ticket_id == ticket.remote_ticket_id for message in messages)
    assert len({message.remote_message_id for message in messages}) == len(messages)
    nothing_new = await bridge.fetch_changes(cursor)
    assert list(nothing_new.events) == []
    assert not nothing_new.more
    assert nothing_new.cursor is not None


async def test_bad_cursor_is_invalid(desk: Desk) -> None:
    with pytest.raises(Invalid):
        await desk.bridge.fetch_changes("not a cursor")


async def test_origin_key_is_echoed(desk: Desk) -> None:
    if not desk.harness.echoes_origin_key:
        pytest.skip(f"{desk.bridge.name} does not echo idempotency keys")
    bridge = desk.bridge
    cursor = await start_cursor(bridge)
    ticket = await open_ticket(bridge, idempotency_key="origin-create")
    keys = ["origin-create"]
    if Capability.REPLY_AS_CUSTOMER in bridge.capabilities:
        await bridge.post_customer_message(
            ticket.remote_ticket_id, CUSTOMER, "more", idempotency_key="origin-post"
        )
        keys.append("origin-post")
    events, cursor = await drain(bridge, cursor)
    assert [message.origin_key for message in messages_of(events, ticket)] == keys
    assert ticket_changes_of(events, ticket)[0].origin_key == "origin-create"

    require(bridge, Capability.CLOSE_REOPEN)
    await bridge.update_ticket(
        ticket.remote_ticket_id,
        TicketUpdate(status=TicketStatus.CLOSED),
        idempotency_key="origin-close",
    )
    events, _ = await drain(bridge, cursor)
    assert [change.origin_key for change in ticket_changes_of(events, ticket)] == ["origin-close"]


async def test_attachments_travel_with_messages(desk: Desk) -> None:
    require(desk.bridge, Capability.ATTACHMENTS, Capability.REPLY_AS_CUSTOMER)
    bridge = desk.bridge
    ticket = await open_ticket(bridge)
    cursor = await start_cursor(bridge)
    scan = Attachment(
        file_name="scan.pdf",
        mime_type="application/pdf",
        size=3,
        kind="document",
        ref="tg-file-1",
        data=b"pdf",
    )

    # A file alone is a message: customers send photos without captions.
    await bridge.post_customer_message(ticket.remote_ticket_id, CUSTOMER, "", attachments=[scan])

    events, _ = await drain(bridge, cursor)
    [message] = messages_of(events, ticket)
    [received] = message.attachments
    assert received.file_name == "scan.pdf"
    if desk.harness.echoes_attachment_ref:
        assert received.ref == "tg-file-1"


async def test_fetch_changes_pages(harness: BridgeHarness, tmp_path: Path) -> None:
    if not harness.page_size_configurable:
        pytest.skip(f"{harness.name} has no configurable page size")
    options = HarnessOptions(tmp_path=tmp_path, page_size=3)
    async with harness.make(options) as (bridge, _):
        require(bridge, Capability.REPLY_AS_CUSTOMER)
        cursor = await start_cursor(bridge)
        ticket = await open_ticket(bridge, text="m0")  # ticket changed + message added
        for number in range(1, 5):
            await bridge.post_customer_message(ticket.remote_ticket_id, CUSTOMER, f"m{number}")

        first = await bridge.fetch_changes(cursor)
        assert (len(first.events), first.more) == (3, True)
        assert first.cursor is not None
        second = await bridge.fetch_changes(first.cursor)
        assert (len(second.events), second.more) == (3, False)
        assert second.cursor is not None
        third = await bridge.fetch_changes(second.cursor)
        assert (list(third.events), third.more, third.cursor) == ([], False, second.cursor)

        texts = [message.text for message in messages_of([*first.events, *second.events], ticket)]
        assert texts == ["m0", "m1", "m2", "m3", "m4"]


# -- ticket updates --------------------------------------------------------------


async def test_close_and_reopen(desk: Desk) -> None:
    require(desk.bridge, Capability.CLOSE_REOPEN)
    bridge = desk.bridge
    ticket = await open_ticket(bridge)
    cursor = await start_cursor(bridge)

    closed = await bridge.update_ticket(
        ticket.remote_ticket_id, TicketUpdate(status=TicketStatus.CLOSED)
    )

    assert closed.status is TicketStatus.CLOSED
    assert (await bridge.get_ticket(ticket.remote_ticket_id)).status is TicketStatus.CLOSED
    events, cursor = await drain(bridge, cursor)
    assert [change.ticket.status for change in ticket_changes_of(events, ticket)] == [
        TicketStatus.CLOSED
    ]

    reopened = await bridge.update_ticket(
        ticket.remote_ticket_id, TicketUpdate(status=TicketStatus.OPEN)
    )

    assert reopened.status is TicketStatus.OPEN
    assert (await bridge.get_ticket(ticket.remote_ticket_id)).status is TicketStatus.OPEN
    events, _ = await drain(bridge, cursor)
    assert [change.ticket.status for change in ticket_changes_of(events, ticket)] == [
        TicketStatus.OPEN
    ]


async def test_closing_a_closed_ticket_changes_nothing(desk: Desk) -> None:
    require(desk.bridge, Capability.CLOSE_REOPEN)
    bridge = desk.bridge
    ticket = await open_ticket(bridge)
    await bridge.update_ticket(ticket.remote_ticket_id, TicketUpdate(status=TicketStatus.CLOSED))
    cursor = await start_cursor(bridge)

    again = await bridge.update_ticket(
        ticket.remote_ticket_id, TicketUpdate(status=TicketStatus.CLOSED)
    )

    assert again.status is TicketStatus.CLOSED
    events, _ = await drain(bridge, cursor)
    assert ticket_changes_of(events, ticket) == []


async def test_priority_changes(desk: Desk) -> None:
    require(desk.bridge, Capability.PRIORITY)
    bridge = desk.bridge
    ticket = await open_ticket(bridge)
    cursor = await start_cursor(bridge)

    updated = await bridge.update_ticket(
        ticket.remote_ticket_id, TicketUpdate(priority=Priority.HIGH)
    )

    assert updated.priority is Priority.HIGH
    assert (await bridge.get_ticket(ticket.remote_ticket_id)).priority is Priority.HIGH
    events, _ = await drain(bridge, cursor)
    assert [change.ticket.priority for change in ticket_changes_of(events, ticket)] == [
        Priority.HIGH
    ]


async def test_assign_and_unassign(desk: Desk) -> None:
    require(desk.bridge, Capability.ASSIGN)
    bridge, agent = desk.bridge, desk.helpers.agent
    ticket = await open_ticket(bridge)
    cursor = await start_cursor(bridge)

    assigned = await bridge.update_ticket(ticket.remote_ticket_id, TicketUpdate(assignee=agent))

    assert assigned.assignee_name == agent.full_name
    assert (await bridge.get_ticket(ticket.remote_ticket_id)).assignee_name == agent.full_name
    events, cursor = await drain(bridge, cursor)
    assert [change.ticket.assignee_name for change in ticket_changes_of(events, ticket)] == [
        agent.full_name
    ]

    unassigned = await bridge.update_ticket(ticket.remote_ticket_id, TicketUpdate(unassign=True))

    assert (unassigned.assignee_name, unassigned.assignee_remote_id) == (None, None)
    fetched = await bridge.get_ticket(ticket.remote_ticket_id)
    assert (fetched.assignee_name, fetched.assignee_remote_id) == (None, None)
    events, _ = await drain(bridge, cursor)
    assert [change.ticket.assignee_name for change in ticket_changes_of(events, ticket)] == [None]


# -- knowledge base --------------------------------------------------------------


async def test_knowledge_base_visibility(desk: Desk) -> None:
    require(desk.bridge, Capability.KNOWLEDGE_BASE)
    helpers = desk.helpers
    await helpers.seed_article("Reset your password", "Open Settings, then Security.", public=True)
    await helpers.seed_article("Lockout runbook", "Unlock the PASSWORD vault first.", public=False)
    await helpers.seed_article("Old password policy", "Retired.", public=True, active=False)
    await helpers.seed_article("Printer queue", "Nothing to see here.", public=True)

    for_customers = await desk.bridge.search_articles("Password", for_agent=False)
    for_agents = await desk.bridge.search_articles("password", for_agent=True)

    assert [article.title for article in for_customers] == ["Reset your password"]
    assert all(article.public for article in for_customers)
    assert {article.title for article in for_agents} == {"Reset your password", "Lockout runbook"}
    assert [article.public for article in for_agents if article.title == "Lockout runbook"] == [
        False
    ]


# -- the local desk beyond the contract ------------------------------------------


AGENT = LOCAL_AGENT


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[LocalDeskHelpers]:
    async with local_desk(HarnessOptions(tmp_path=tmp_path)) as helpers:
        yield helpers


async def test_local_registers_itself(local: LocalDeskHelpers) -> None:
    assert "local" in available()
    bridge = await create_bridge("local", BridgeDeps(engine=local.engine))
    assert isinstance(bridge, LocalDeskBridge)
    assert bridge.page_size == 500


async def test_local_status_follows_the_conversation(local: LocalDeskHelpers) -> None:
    bridge = local.bridge
    ticket = await open_ticket(bridge)
    ticket_id = ticket.remote_ticket_id
    cursor = await start_cursor(bridge)

    await bridge.post_note(ticket_id, AGENT, "checking")
    assert (await bridge.get_ticket(ticket_id)).status is TicketStatus.OPEN
    await bridge.post_agent_reply(ticket_id, AGENT, "Fixed?")
    assert (await bridge.get_ticket(ticket_id)).status is TicketStatus.WAITING
    await bridge.post_customer_message(ticket_id, CUSTOMER, "No.")
    assert (await bridge.get_ticket(ticket_id)).status is TicketStatus.OPEN
    await bridge.update_ticket(ticket_id, TicketUpdate(status=TicketStatus.CLOSED))
    await bridge.post_agent_reply(ticket_id, AGENT, "Closing remark")
    assert (await bridge.get_ticket(ticket_id)).status is TicketStatus.CLOSED
    await bridge.post_customer_message(ticket_id, CUSTOMER, "It broke again.")
    assert (await bridge.get_ticket(ticket_id)).status is TicketStatus.OPEN

    events, _ = await drain(bridge, cursor)
    kinds = [
        change.message.author_kind.value if isinstance(change, MessageAdded) else "changed"
        for change in events
    ]
    assert kinds == [
        "note",
        "agent",
        "changed",  # waiting
        "customer",
        "changed",  # open
        "changed",  # closed
        "agent",
        "customer",
        "changed",  # reopened
    ]


async def test_local_update_with_a_seen_key_is_not_applied_again(local: LocalDeskHelpers) -> None:
    bridge = local.bridge
    ticket = await open_ticket(bridge)
    close = TicketUpdate(status=TicketStatus.CLOSED)
    await bridge.update_ticket(ticket.remote_ticket_id, close, idempotency_key="close-1")
    await bridge.update_ticket(ticket.remote_ticket_id, TicketUpdate(status=TicketStatus.OPEN))
    cursor = await start_cursor(bridge)

    replayed = await bridge.update_ticket(ticket.remote_ticket_id, close, idempotency_key="close-1")

    assert replayed.status is TicketStatus.OPEN
    events, _ = await drain(bridge, cursor)
    assert events == []


async def test_local_concurrent_creates_with_one_key_make_one_ticket(
    local: LocalDeskHelpers,
) -> None:
    bridge = local.bridge
    cursor = await start_cursor(bridge)

    tickets = await asyncio.gather(
        *(open_ticket(bridge, idempotency_key="racing") for _ in range(4))
    )

    assert len({ticket.remote_ticket_id for ticket in tickets}) == 1
    events, _ = await drain(bridge, cursor)
    assert len(events) == 2


async def test_local_concurrent_posts_with_one_key_make_one_message(
    local: LocalDeskHelpers,
) -> None:
    bridge = local.bridge
    ticket = await open_ticket(bridge)
    cursor = await start_cursor(bridge)

    messages = await asyncio.gather(
        *(
            bridge.post_customer_message(
                ticket.remote_ticket_id, CUSTOMER, "once", idempotency_key="racing-post"
            )
            for _ in range(4)
        )
    )

    assert len({message.remote_message_id for message in messages}) == 1
    events, _ = await drain(bridge, cursor)
    assert len(messages_of(events, ticket)) == 1


async def test_local_refuses_a_message_key_reused_on_another_ticket(
    local: LocalDeskHelpers,
) -> None:
    bridge = local.bridge
    first, second = await open_ticket(bridge), await open_ticket(bridge)
    await bridge.post_customer_message(first.remote_ticket_id, CUSTOMER, "hi", idempotency_key="k")

    with pytest.raises(Invalid):
        await bridge.post_customer_message(
            second.remote_ticket_id, CUSTOMER, "hi", idempotency_key="k"
        )


async def test_local_refuses_blank_text_and_odd_ids(local: LocalDeskHelpers) -> None:
    bridge = local.bridge
    ticket = await open_ticket(bridge)
    with pytest.raises(Invalid):
        await bridge.post_customer_message(ticket.remote_ticket_id, CUSTOMER, " \n ")
    for odd in ("abc", "-1", "0", "", "99999999999999999999999"):
        with pytest.raises(NotFound):
            await bridge.get_ticket(odd)
    for odd_cursor in ("-1", "1.5", "", "99999999999999999999999"):
        with pytest.raises(Invalid):
            await bridge.fetch_changes(odd_cursor)


async def test_local_subject_falls_back_to_the_first_line(local: LocalDeskHelpers) -> None:
    ticket = await open_ticket(local.bridge, subject="  ", text="Wi-Fi drops\nevery hour")
    assert ticket.subject == "Wi-Fi drops"
    assert ticket.number == ticket.remote_ticket_id
    assert ticket.url is None


async def test_local_times_are_utc(local: LocalDeskHelpers) -> None:
    bridge = local.bridge
    cursor = await start_cursor(bridge)
    ticket = await bridge.get_ticket((await open_ticket(bridge)).remote_ticket_id)
    events, _ = await drain(bridge, cursor)

    [message] = messages_of(events, ticket)
    for moment in (ticket.created_at, ticket.updated_at, message.created_at):
        assert moment is not None
        assert moment.tzinfo is UTC


async def test_local_fetch_changes_reads_in_bulk(local: LocalDeskHelpers) -> None:
    bridge = local.bridge
    cursor = await start_cursor(bridge)
    for number in range(6):
        ticket = await open_ticket(bridge, subject=f"ticket {number}")
        await bridge.post_agent_reply(ticket.remote_ticket_id, AGENT, "on it")
        await bridge.update_ticket(ticket.remote_ticket_id, TicketUpdate(priority=Priority.HIGH))
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    event.listen(local.engine.sync_engine, "before_cursor_execute", record)
    try:
        changes = await bridge.fetch_changes(cursor)
    finally:
        event.remove(local.engine.sync_engine, "before_cursor_execute", record)

    assert len(changes.events) == 6 * 5
    selects = [statement for statement in statements if statement.lstrip().startswith("SELECT")]
    assert len(selects) == 3, selects  # events, their messages, their tickets


async def test_local_agents_link_by_login(local: LocalDeskHelpers) -> None:
    bridge = local.bridge
    assert await bridge.find_agent("   ") is None
    linked = await bridge.find_agent(" boris.b ")
    assert linked is not None
    assert (linked.agent_ref, linked.full_name) == ("boris.b", "boris.b")
    again = await bridge.find_agent("boris.b")
    assert again == linked

    ticket = await open_ticket(bridge)
    me = AgentIdentity("tg:2001", "Boris in Telegram", remote_agent_id=linked.remote_agent_id)
    reply = await bridge.post_agent_reply(ticket.remote_ticket_id, me, "Hello")
    assigned = await bridge.update_ticket(ticket.remote_ticket_id, TicketUpdate(assignee=me))
    assert reply.author_name == "boris.b"
    assert (assigned.assignee_name, assigned.assignee_remote_id) == ("boris.b", "tg:2001")

    stale = AgentIdentity("tg:2001", "Boris in Telegram", remote_agent_id="424242")
    note = await bridge.post_note(ticket.remote_ticket_id, stale, "still delivered")
    assert note.author_name == "Boris in Telegram"


async def test_local_articles_can_be_added_listed_and_deleted(local: LocalDeskHelpers) -> None:
    bridge = local.bridge
    greeting = await bridge.add_article("Greeting", "Hello! How can we help?")
    internal = await bridge.add_article("Escalation", "Call the on-duty admin.", public=False)

    assert [article.title for article in await bridge.list_articles()] == [
        "Escalation",
        "Greeting",
    ]
    assert internal.public is False
    assert await bridge.delete_article(greeting.remote_id) is True
    assert await bridge.delete_article(greeting.remote_id) is False
    assert await bridge.delete_article("not-an-id") is False
    assert [article.remote_id for article in await bridge.list_articles()] == [internal.remote_id]
    with pytest.raises(Invalid):
        await bridge.add_article("  ", "text")


async def test_local_search_folds_any_alphabet(local: LocalDeskHelpers) -> None:
    bridge = local.bridge
    body = await bridge.add_article("Оплата", "Как сменить ПАРОЛЬ после оплаты")
    title = await bridge.add_article("Сброс пароля", "Откройте настройки.")
    await bridge.add_article("Discounts", "Up to 100% off")

    found = await bridge.search_articles("ПАРОЛ", for_agent=False)
    assert [article.remote_id for article in found] == [title.remote_id, body.remote_id]
    assert [article.title for article in await bridge.search_articles("0%", for_agent=True)] == [
        "Discounts"
    ]
    assert await bridge.search_articles("_", for_agent=True) == []
    assert len(await bridge.search_articles("", for_agent=True, limit=2)) == 2


async def test_local_check_counts_and_reports_missing_tables(
    local: LocalDeskHelpers, tmp_path: Path
) -> None:
    ticket = await open_ticket(local.bridge)
    await open_ticket(local.bridge)
    await local.bridge.update_ticket(
        ticket.remote_ticket_id, TicketUpdate(status=TicketStatus.CLOSED)
    )
    await local.bridge.add_article("Greeting", "Hello!")
    report = await local.bridge.check()
    assert report.ok
    assert report.lines == ["local desk: 2 tickets (1 open), 1 knowledge-base articles"]

    empty = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        missing = await LocalDeskBridge(empty).check()
    finally:
        await empty.dispose()
    assert not missing.ok
    assert "local_tickets" in missing.lines[0]


async def test_local_page_size_must_be_positive(local: LocalDeskHelpers) -> None:
    with pytest.raises(ValueError):
        LocalDeskBridge(local.engine, page_size=0)


async def test_local_poller_never_skips_a_late_commit(local: LocalDeskHelpers) -> None:
    # Concurrent writers on PostgreSQL get sequence ids out of commit order;
    # a poller racing them must still see every event exactly once.
    bridge = local.bridge
    tickets = [await open_ticket(bridge, subject=f"busy {number}") for number in range(6)]
    cursor = await start_cursor(bridge)
    seen: list[str] = []
    writing = True

    async def write(ticket: RemoteTicket) -> None:
        for number in range(25):
            await bridge.post_customer_message(ticket.remote_ticket_id, CUSTOMER, f"#{number}")

    async def poll() -> None:
        nonlocal cursor
        while writing:
            changes = await bridge.fetch_changes(cursor)
            assert changes.cursor is not None
            cursor = changes.cursor
            seen.extend(
                change.message.remote_message_id
                for change in changes.events
                if isinstance(change, MessageAdded)
            )

    poller = asyncio.create_task(poll())
    try:
        await asyncio.gather(*(write(ticket) for ticket in tickets))
    finally:
        writing = False
        await poller
    rest, _ = await drain(bridge, cursor)
    seen.extend(
        change.message.remote_message_id for change in rest if isinstance(change, MessageAdded)
    )

    assert len(seen) == len(set(seen)) == 6 * 25
