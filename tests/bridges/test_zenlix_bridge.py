"""The Zenlix bridge beyond the shared contract: customers, text a strict
install accepts, linked agents, locking and referral, and the adaptive poll,
against the fake Zenlix on loopback."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from bot.sandbox.zenlix import FakeTicket, FakeZenlix
from bridges.base import (
    AgentIdentity,
    Attachment,
    AuthorKind,
    ChangeEvent,
    CustomerIdentity,
    MessageAdded,
    NewTicket,
    Priority,
    RemoteMessage,
    TicketChanged,
    TicketStatus,
    TicketUpdate,
)
from bridges.errors import Forbidden, Invalid, NotFound, Unavailable
from bridges.state import BridgeStateRow
from bridges.zenlix import ZenlixBridge
from bridges.zenlix.text import COMMENT_LIMIT, storable
from tests.bridges.harness_zenlix import (
    AGENT_LOGIN,
    AGENT_PASSWORD,
    SERVICE_PASSWORD,
    ZenlixHelpers,
    zenlix_desk,
)

ANNA = CustomerIdentity(customer_ref="tg:1001", full_name="Anna Customer")
JANE = CustomerIdentity(customer_ref="tg:1002", full_name="Jane", username="jane")
SUPPORT = AgentIdentity(agent_ref="tg:3001", full_name="Sam Support")  # not linked


@pytest.fixture
async def zx(tmp_path: Path) -> AsyncIterator[ZenlixHelpers]:
    async with zenlix_desk(tmp_path) as helpers:
        yield helpers


async def create(bridge: ZenlixBridge, customer: CustomerIdentity = ANNA, *,
                 text: str = "The printer is on fire.", subject: str = "Printer on fire",
                 key: str | None = None, department: str | None = None) -> str:
    ticket = await bridge.create_ticket(NewTicket(customer, subject, text,
                                                  idempotency_key=key,
                                                  department_id=department))
    return ticket.remote_ticket_id


async def poll(bridge: ZenlixBridge, cursor: str) -> tuple[list[ChangeEvent], str]:
    """One scheduled poll: a fetch, and follow-ups while the bridge says `more`."""
    events: list[ChangeEvent] = []
    for _ in range(50):
        changes = await bridge.fetch_changes(cursor)
        events.extend(changes.events)
        assert changes.cursor is not None
        cursor = changes.cursor
        if not changes.more:
            return events, cursor
    raise AssertionError("more for ever")


async def start(bridge: ZenlixBridge) -> str:
    cursor = (await bridge.fetch_changes(None)).cursor
    assert cursor is not None
    return cursor


def messages(events: Sequence[ChangeEvent]) -> list[RemoteMessage]:
    return [event.message for event in events if isinstance(event, MessageAdded)]


def changes(events: Sequence[ChangeEvent]) -> list[TicketChanged]:
    return [event for event in events if isinstance(event, TicketChanged)]


def stored(fake: FakeZenlix, ticket_hash: str) -> FakeTicket:
    return fake.ticket(ticket_hash)


# -- customers -----------------------------------------------------------------------


async def test_customers_are_found_by_phone_name_or_default(zx: ZenlixHelpers) -> None:
    bridge, fake, world = zx.bridge, zx.fake, zx.world
    by_phone = CustomerIdentity("tg:1", "Anna", phone="+79160001122")
    by_name = CustomerIdentity("tg:2", "Anna Customer")  # Zenlix: "Customer Anna"
    by_mail = CustomerIdentity("tg:3", "Anna", email="anna@example.com")
    fake.users[world.anna].email = "anna@example.com"  # never searched: the server cannot

    clients = [stored(fake, await create(bridge, c, text=f"from {c.customer_ref}")).client
               for c in (by_phone, by_name, by_mail)]

    assert clients == [world.anna, world.anna, world.guest]
    guest_ticket = stored(fake, fake.tickets[-1].hash)
    assert guest_ticket.text.startswith(
        "Anna (Telegram: anna@example.com)\nPrinter on fire\n\nfrom tg:3")
    known = CustomerIdentity("tg:4", "Who", remote_customer_id=world.anna)
    searches = fake.requests["get_users_list"]
    assert stored(fake, await create(bridge, known, text="again")).client == world.anna
    assert fake.requests["get_users_list"] == searches  # stored: no search


async def test_missing_contact_without_phone_name_or_default(tmp_path: Path) -> None:
    async with zenlix_desk(tmp_path, ZENLIX_DEFAULT_CLIENT="") as zx:
        bridge = zx.bridge
        jane_doe = CustomerIdentity("tg:7", "Jane Doe")
        assert bridge.missing_contact(JANE)  # one word: no name match possible
        assert not bridge.missing_contact(jane_doe)
        assert not bridge.missing_contact(CustomerIdentity("tg:8", "J", phone="+100200300"))

        with pytest.raises(NotFound, match="share their phone"):
            await create(bridge, jane_doe)

        assert bridge.missing_contact(jane_doe)  # the name did not match: ask
        assert zx.fake.requests["create_ticket"] == 0


# -- creating tickets ------------------------------------------------------------------


async def test_subject_department_and_priority(zx: ZenlixHelpers) -> None:
    bridge, fake = zx.bridge, zx.fake
    vpn = await bridge.create_ticket(NewTicket(ANNA, "VPN is down", "VPN is down since 9",
                                               priority=Priority.CRITICAL, department_id="2"))
    other = await create(bridge, subject="Printer on fire", text="Printer on fire, again")

    assert [d.title for d in await bridge.list_departments()] == ["Support", "Billing"]
    assert (stored(fake, vpn.remote_ticket_id).subj, stored(fake, vpn.remote_ticket_id).unit,
            stored(fake, vpn.remote_ticket_id).prio) == ("2", 2, 2)
    assert (stored(fake, other).subj, stored(fake, other).unit) == ("1", 1)  # first of each
    assert stored(fake, other).text == "Printer on fire, again"  # subject already first
    assert vpn.priority is Priority.HIGH and vpn.subject == "VPN is down"
    assert vpn.url == f"{fake.base_url}/ticket?{vpn.remote_ticket_id}"
    with pytest.raises(Invalid):
        await create(bridge, department="Billing")  # unit_id must be numeric
    assert all(call["unit_id"].isdigit() for call in fake.calls("create_ticket"))


async def test_one_creation_per_second(zx: ZenlixHelpers) -> None:
    hashes = [await create(zx.bridge, text=f"number {n}") for n in range(4)]
    assert len(set(hashes)) == 4  # the hash comes from the second: never two in one
    created = [stored(zx.fake, h).created for h in hashes]
    assert created == sorted(set(created))


class FrozenClock:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1_750_000_000.2

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_a_shared_hash_is_detected_and_not_reused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FrozenClock()
    async with zenlix_desk(tmp_path, clock=clock) as zx:
        # Someone in the Zenlix UI created a ticket this very second.
        ui = zx.fake.seed_ticket(zx.world.anna, "made in the UI", ticket_hash=hashlib.md5(
            str(int(clock.now)).encode()).hexdigest())

        with pytest.raises(Unavailable, match="hash is taken"):
            await create(zx.bridge, key="create:1")
        assert "shares its hash" in caplog.text

        clock.now += 1.0
        retried = await create(zx.bridge, key="create:1")
        assert retried != ui
        assert stored(zx.fake, retried).text.endswith("The printer is on fire.")
        assert len(zx.fake.tickets) == 3  # the unreachable one stays for an admin


async def test_a_creation_interrupted_after_zenlix_stored_it(
    zx: ZenlixHelpers, monkeypatch: pytest.MonkeyPatch
) -> None:
    bridge = zx.bridge
    real = bridge.records.finish_creation

    async def crash(*args: object) -> None:
        raise ConnectionError("database went away")

    monkeypatch.setattr(bridge.records, "finish_creation", crash)
    with pytest.raises(ConnectionError):
        await create(bridge, key="create:9")
    monkeypatch.setattr(bridge.records, "finish_creation", real)

    again = await create(bridge, key="create:9")
    twice = await create(bridge, key="create:9")

    assert zx.fake.requests["create_ticket"] == 1
    assert again == twice == zx.fake.tickets[0].hash


# -- posting ---------------------------------------------------------------------------


async def test_emoji_and_long_texts_are_stored_in_order(zx: ZenlixHelpers) -> None:
    bridge, fake = zx.bridge, zx.fake
    ticket = await create(bridge)
    cursor = await start(bridge)
    long_text = "🙂 Начало. " + " ".join(f"слово{n}" for n in range(700)) + " Конец 🎉"
    assert len(long_text) > 5000

    posted = await bridge.post_customer_message(ticket, ANNA, long_text,
                                                idempotency_key="post:41")

    comments = fake.comments_of(ticket)
    parts = len(comments)
    assert parts == 4  # the emoji's names make it longer still
    assert all(len(c.text) <= COMMENT_LIMIT for c in comments)
    assert all(ord(ch) <= 0xFFFF for c in comments for ch in c.text)
    assert [c.text[:32] for c in comments] == [
        f"Anna Customer (Telegram): ({n}/{parts}) " for n in range(1, parts + 1)]
    bodies = "".join(c.text.split(") ", 1)[1] for c in comments)
    assert bodies == storable(long_text)
    assert bodies.startswith("[slightly smiling face] Начало.")
    assert bodies.endswith("Конец [party popper]")
    # The poll reports the three comments as the one message the bot knows.
    events, cursor = await poll(bridge, cursor)
    [seen] = messages(events)
    assert (seen.remote_message_id, seen.origin_key) == (posted.remote_message_id, "post:41")
    assert seen.remote_message_id == f"{ticket}:1"
    assert (seen.author_kind, seen.text) == (AuthorKind.CUSTOMER, storable(long_text))


async def test_agent_replies_carry_their_account_or_name(zx: ZenlixHelpers) -> None:
    bridge, fake, world = zx.bridge, zx.fake, zx.world
    ticket = await create(bridge)

    await bridge.post_agent_reply(ticket, zx.agent, "Linked reply")
    await bridge.post_agent_reply(ticket, SUPPORT, "Service reply")
    await bridge.post_customer_message(ticket, ANNA, "Photo attached",
                                       attachments=[Attachment("scan.pdf")])

    comments = fake.comments_of(ticket)
    assert [(c.author, c.text) for c in comments] == [
        (world.boris, "Linked reply"),
        (world.service, "Sam Support: Service reply"),
        (world.service, "Anna Customer (Telegram): Photo attached\n"
                        "[attachment not transferred: scan.pdf]"),
    ]
    with pytest.raises(Invalid):
        await bridge.post_note(ticket, SUPPORT, "no notes in Zenlix")


async def test_linking_keeps_the_key_never_the_password(zx: ZenlixHelpers) -> None:
    bridge = zx.bridge
    with pytest.raises(Invalid, match="password"):
        await bridge.find_agent(AGENT_LOGIN)
    assert await bridge.find_agent(AGENT_LOGIN, "wrong") is None
    assert await bridge.find_agent("  ") is None
    linked = await bridge.find_agent(AGENT_LOGIN, AGENT_PASSWORD)
    assert linked is not None
    assert (linked.full_name, linked.remote_agent_id) == ("Boris Agent", zx.world.boris)

    async with zx.engine.connect() as connection:
        values = " ".join((await connection.execute(select(BridgeStateRow.value))).scalars())
    assert AGENT_PASSWORD not in values and SERVICE_PASSWORD not in values
    assert next(k for k, h in zx.fake.keys.items() if h == zx.world.boris) in values


async def test_a_refused_agent_key_falls_back_to_the_service_account(
    zx: ZenlixHelpers
) -> None:
    bridge, fake, world = zx.bridge, zx.fake, zx.world
    ticket = await create(bridge)
    fake.revoke_keys()  # e.g. an admin reset Boris's key

    reply = await bridge.post_agent_reply(ticket, zx.agent, "Still delivered")

    [comment] = fake.comments_of(ticket)
    assert (comment.author, comment.text) == (world.service, "Boris Agent: Still delivered")
    assert reply.remote_message_id == f"{ticket}:1"
    assert await bridge.records.agent(world.boris) is None  # unlinked: /link again


async def test_posting_checks_the_ticket_and_is_idempotent(zx: ZenlixHelpers) -> None:
    bridge, fake = zx.bridge, zx.fake
    with pytest.raises(NotFound):
        await bridge.post_customer_message("0" * 32, ANNA, "into the void")
    assert [c for c in fake.comments if c.ticket_id is None] == []  # no orphan comment
    ticket = await create(bridge)
    first = await bridge.post_agent_reply(ticket, SUPPORT, "Once", idempotency_key="post:1")
    again = await bridge.post_agent_reply(ticket, SUPPORT, "Once", idempotency_key="post:1")
    assert first.remote_message_id == again.remote_message_id
    assert len(fake.comments_of(ticket)) == 1
    with pytest.raises(Invalid):
        await bridge.post_customer_message(ticket, ANNA, "\x00 ")


async def test_a_post_interrupted_half_way_is_finished_not_repeated(
    zx: ZenlixHelpers, monkeypatch: pytest.MonkeyPatch
) -> None:
    bridge, fake, world = zx.bridge, zx.fake, zx.world
    ticket = await create(bridge)
    cursor = await start(bridge)
    text = "x" * 3000  # two comments
    fake.fail_next("500", mode="add_ticket_comment")  # ...and the first one fails
    with pytest.raises(Unavailable):
        await bridge.post_agent_reply(ticket, SUPPORT, text, idempotency_key="post:5")
    real = bridge.records.finish_post

    async def crash(*args: object) -> None:
        raise ConnectionError("database went away")

    monkeypatch.setattr(bridge.records, "finish_post", crash)
    with pytest.raises(ConnectionError):  # both stored, but not recorded
        await bridge.post_agent_reply(ticket, SUPPORT, text, idempotency_key="post:5")
    fake.comment_as(world.olga, ticket, "Olga, in the Zenlix UI")

    events, cursor = await poll(bridge, cursor)

    assert [m.text for m in messages(events)] == ["Olga, in the Zenlix UI"]  # not ours as hers
    monkeypatch.setattr(bridge.records, "finish_post", real)
    done = await bridge.post_agent_reply(ticket, SUPPORT, text, idempotency_key="post:5")
    assert done.remote_message_id == f"{ticket}:1"
    assert len(fake.comments_of(ticket)) == 3  # two pieces and Olga's: nothing repeated


# -- agent actions ---------------------------------------------------------------------


async def test_take_close_reopen_as_the_service_account(zx: ZenlixHelpers) -> None:
    bridge, fake, world = zx.bridge, zx.fake, zx.world
    ticket = await create(bridge)
    cursor = await start(bridge)

    taken = await bridge.update_ticket(ticket, TicketUpdate(assignee=SUPPORT), actor=SUPPORT,
                                       idempotency_key="take-1")
    assert stored(fake, ticket).lock_by == world.service
    assert taken.assignee_name == "Sam Support"
    events, cursor = await poll(bridge, cursor)
    assert [(c.ticket.assignee_name, c.origin_key) for c in changes(events)] == [
        ("Sam Support", "take-1")]

    closed = await bridge.update_ticket(ticket, TicketUpdate(status=TicketStatus.CLOSED),
                                        actor=SUPPORT, idempotency_key="close-1")
    assert closed.status is TicketStatus.CLOSED and stored(fake, ticket).ok
    reopened = await bridge.update_ticket(ticket, TicketUpdate(status=TicketStatus.OPEN),
                                          actor=SUPPORT, idempotency_key="reopen-1")
    # ticket_no_ok leaves the ticket locked by whoever reopened it.
    assert (reopened.status, reopened.assignee_name) == (TicketStatus.OPEN, "Sam Support")
    assert stored(fake, ticket).lock_by == world.service
    released = await bridge.update_ticket(ticket, TicketUpdate(unassign=True), actor=SUPPORT)
    assert released.assignee_name is None and stored(fake, ticket).lock_by is None
    with pytest.raises(Invalid):
        await bridge.update_ticket(ticket, TicketUpdate(priority=Priority.HIGH))


async def test_a_linked_agent_acts_with_their_own_privileges(zx: ZenlixHelpers) -> None:
    bridge, fake, world = zx.bridge, zx.fake, zx.world
    ticket = await create(bridge)
    fake.lock_as(world.olga, ticket)  # Olga took it in the Zenlix UI
    cursor = await start(bridge)

    with pytest.raises(Forbidden) as refused:
        await bridge.update_ticket(ticket, TicketUpdate(status=TicketStatus.CLOSED),
                                   actor=zx.agent)
    assert "Boris Agent has no privileges" in str(refused.value)
    assert "locked by Olga Petrova" in str(refused.value)
    assert (stored(fake, ticket).lock_by, stored(fake, ticket).ok) == (world.olga, False)
    # The bot had already marked it closed: the next poll says how it really is.
    events, cursor = await poll(bridge, cursor)
    assert [(c.ticket.status, c.ticket.assignee_name, c.origin_key) for c in changes(events)
            ] == [(TicketStatus.OPEN, "Olga Petrova", None)]

    # The service account is a chief: it may take the ticket over for Sam.
    taken = await bridge.update_ticket(ticket, TicketUpdate(assignee=SUPPORT), actor=SUPPORT)
    assert taken.assignee_name == "Sam Support"
    mine = await bridge.update_ticket(ticket, TicketUpdate(assignee=zx.agent), actor=SUPPORT)
    assert (stored(fake, ticket).lock_by, mine.assignee_name) == (world.boris, "Boris Agent")
    closed = await bridge.update_ticket(ticket, TicketUpdate(status=TicketStatus.CLOSED),
                                        actor=zx.agent)
    assert closed.status is TicketStatus.CLOSED and stored(fake, ticket).ok_by == world.boris


async def test_a_customer_reopening_frees_the_ticket(zx: ZenlixHelpers) -> None:
    bridge, fake = zx.bridge, zx.fake
    ticket = await create(bridge)
    await bridge.update_ticket(ticket, TicketUpdate(status=TicketStatus.CLOSED))
    reopened = await bridge.update_ticket(ticket, TicketUpdate(status=TicketStatus.OPEN))
    assert reopened.status is TicketStatus.OPEN and reopened.assignee_name is None
    assert stored(fake, ticket).lock_by is None
    fake.archive(ticket)
    closed = await bridge.update_ticket(ticket, TicketUpdate(status=TicketStatus.CLOSED))
    assert closed.status is TicketStatus.CLOSED  # archived is closed already
    with pytest.raises(Invalid, match="archived"):
        await bridge.update_ticket(ticket, TicketUpdate(status=TicketStatus.OPEN))


async def test_refer_to_a_department_or_a_person(zx: ZenlixHelpers) -> None:
    bridge, fake, world = zx.bridge, zx.fake, zx.world
    ticket = await create(bridge)

    text = stored(fake, ticket).text
    await bridge.refer(ticket, "Billing", actor=SUPPORT)
    # To the department's ordinary agents by name (Olga; the chief sees all).
    assert (stored(fake, ticket).unit, stored(fake, ticket).user_to) == (2, world.olga)
    await bridge.refer(ticket, "1")
    assert (stored(fake, ticket).unit, stored(fake, ticket).user_to) == (
        1, f"{world.boris},{world.olga}")
    await bridge.refer(ticket, "@Olga Petrova")
    assert (stored(fake, ticket).unit, stored(fake, ticket).user_to) == (1, world.olga)
    assert stored(fake, ticket).text == text  # no note appended to the ticket's text
    with pytest.raises(NotFound):
        await bridge.refer(ticket, "Accounting")
    fake.lock_as(world.olga, ticket)
    with pytest.raises(Forbidden, match="refer"):
        await bridge.refer(ticket, "Billing", actor=zx.agent)


async def agent_sees(zx: ZenlixHelpers, login: str, password: str, ticket: str) -> bool:
    """Whether the agent finds the ticket in their own `ticket_list` (over HTTP,
    with their own key), as they would in the Zenlix UI."""
    client = zx.bridge.client
    key = SecretStr((await client.sign_in(login, SecretStr(password))).uniq_id)
    answer = await client.call("ticket_list", {"type": "in"}, key=key)
    return ticket in [row["ticket_hash"] for row in answer["tickets"]]


async def test_a_referred_ticket_stays_visible_to_the_departments_agents(
    zx: ZenlixHelpers
) -> None:
    """Issue 14: `refer_ticket` with user_to_id "0" stores NULL, which ordinary
    agents' lists never match."""
    bridge, fake, world = zx.bridge, zx.fake, zx.world
    ticket = await create(bridge)
    assert await agent_sees(zx, AGENT_LOGIN, AGENT_PASSWORD, ticket)  # Boris: unit 1

    await bridge.refer(ticket, "Billing", actor=SUPPORT)
    assert await agent_sees(zx, "olga", "olga-secret", ticket)  # Olga: units 1 and 2
    assert not await agent_sees(zx, AGENT_LOGIN, AGENT_PASSWORD, ticket)  # not Billing

    fake.lock_as(world.olga, ticket)  # Olga takes it in the Zenlix UI
    referred = await bridge.refer(ticket, "Support", actor=SUPPORT)
    # Zenlix refuses to refer a ticket someone else holds, even for a chief:
    # the service account took it over first.
    assert (stored(fake, ticket).unit, stored(fake, ticket).lock_by) == (1, None)
    assert referred.assignee_name is None
    assert await agent_sees(zx, AGENT_LOGIN, AGENT_PASSWORD, ticket)
    assert await agent_sees(zx, "olga", "olga-secret", ticket)


# -- polling ---------------------------------------------------------------------------


async def test_a_lock_passed_between_agents_updates_the_assignee(zx: ZenlixHelpers) -> None:
    """Issue 14: the status stays `lock_by_other` when the lock goes from one
    agent to another between two polls; only `lock_by_other_fio` changes."""
    bridge, fake, world = zx.bridge, zx.fake, zx.world
    ivanova = fake.add_staff("ivanova", "pw", "Ivanova Maria Petrovna")
    ticket = await create(bridge)
    cursor = await start(bridge)

    fake.lock_as(world.olga, ticket)
    events, cursor = await poll(bridge, cursor)
    assert [c.ticket.assignee_name for c in changes(events)] == ["Olga Petrova"]

    fake.unlock_as(world.olga, ticket)
    fake.lock_as(ivanova, ticket)  # between two polls
    events, cursor = await poll(bridge, cursor)
    [passed] = changes(events)
    assert (passed.ticket.assignee_remote_id, passed.ticket.assignee_name) == (
        ivanova, "Ivanova Maria Petrovna")

    fake.unlock_as(ivanova, ticket)
    fake.lock_as(world.olga, ticket)
    events, cursor = await poll(bridge, cursor)
    assert [c.ticket.assignee_name for c in changes(events)] == ["Olga Petrova"]
    events, cursor = await poll(bridge, cursor)
    assert changes(events) == []  # and only once


@pytest.mark.parametrize("text", [
    "Is 2 <",  # a `<` at the very end starts a tag for strip_tags
    "a <\u00a0b> c",  # so does one before a no-break space
    "x <\u3000y",
    "<3 thanks",
])
async def test_text_strip_tags_would_eat_is_stored_once_and_known_as_ours(
    zx: ZenlixHelpers, text: str
) -> None:
    """Issue 14: the bridge must find the comment it just posted; otherwise it
    raises, the retry posts a copy, and the poll hands every copy back to the
    customer as a support reply."""
    bridge, fake = zx.bridge, zx.fake
    ticket = await create(bridge)
    cursor = await start(bridge)

    posted = await bridge.post_customer_message(ticket, ANNA, text, idempotency_key="post:1")
    again = await bridge.post_customer_message(ticket, ANNA, text, idempotency_key="post:1")

    [comment] = fake.comments_of(ticket)
    assert comment.text == "Anna Customer (Telegram): " + storable(text)
    assert again.remote_message_id == posted.remote_message_id
    events, cursor = await poll(bridge, cursor)
    assert [(m.remote_message_id, m.author_kind, m.origin_key) for m in messages(events)] == [
        (posted.remote_message_id, AuthorKind.CUSTOMER, "post:1")]


async def test_a_ticket_the_list_cannot_encode_stops_no_replies(zx: ZenlixHelpers) -> None:
    """Issue 14: `ticket_list` cuts texts at 150 bytes with wordwrap; with no
    ASCII space before byte 150 and a character across it, json_encode fails
    and the whole answer is four spaces. The bridge never writes such a text,
    and what others wrote does not stop its polling."""
    bridge, fake, world = zx.bridge, zx.fake, zx.world
    chinese = "我的打印机着火了请帮帮我" * 8  # 96 characters, 288 bytes, no space
    mine = await create(bridge, subject=chinese, text="a" + chinese)
    assert storable(chinese) in stored(fake, mine).text
    cursor = await start(bridge)  # the list is readable: our head carries a space
    assert mine in cursor

    fake.seed_ticket(world.anna, "a" + chinese)  # someone else's, in the Zenlix UI
    with pytest.raises(Unavailable, match="cannot be encoded"):
        await bridge.client.call("ticket_list", {"type": "in"})
    fake.comment_as(world.olga, mine, "an answer on our ticket")
    later = await create(bridge, text="created while the list is unreadable", key="create:2")
    fake.comment_as(world.olga, later, "and an answer on that one")
    fake.lock_as(world.olga, later)

    events: list[ChangeEvent] = []
    for _ in range(bridge.settings.idle_max_cycles + 1):
        more, cursor = await poll(bridge, cursor)
        events.extend(more)

    assert sorted(m.text for m in messages(events) if m.origin_key is None) == [
        "an answer on our ticket", "and an answer on that one"]
    assert [c.ticket.assignee_name for c in changes(events)
            if c.ticket.remote_ticket_id == later][-1] == "Olga Petrova"
    assert later in cursor




async def test_zenlix_changes_arrive_once_and_own_ones_are_known(zx: ZenlixHelpers) -> None:
    bridge, fake, world = zx.bridge, zx.fake, zx.world
    cursor = await start(bridge)
    ticket = await create(bridge, key="create:1")
    mine = await bridge.post_customer_message(ticket, ANNA, "More details",
                                              idempotency_key="post:2")
    fake.comment_as(world.olga, ticket, "<p>Have you tried <b>restarting</b>?</p>")
    fake.comment_as(world.anna, ticket, "From the client portal")

    events, cursor = await poll(bridge, cursor)

    [created] = changes(events)
    assert (created.origin_key, created.ticket.customer_ref) == ("create:1", "tg:1001")
    assert [(m.remote_message_id, m.author_kind, m.author_name, m.text, m.origin_key)
            for m in messages(events)] == [
        (f"{ticket}:0", AuthorKind.CUSTOMER, None, "The printer is on fire.", "create:1"),
        (mine.remote_message_id, AuthorKind.CUSTOMER, "Desk Bot", "More details", "post:2"),
        (f"{ticket}:2", AuthorKind.AGENT, "Olga Petrova", "Have you tried restarting?", None),
        (f"{ticket}:3", AuthorKind.CUSTOMER, "Customer Anna", "From the client portal", None),
    ]
    for _ in range(3):
        events, cursor = await poll(bridge, cursor)
        assert events == []

    fake.close_as(world.olga, ticket)
    events, cursor = await poll(bridge, cursor)
    [closed] = changes(events)
    assert (closed.ticket.status, closed.ticket.assignee_name, closed.origin_key) == (
        TicketStatus.CLOSED, "Olga Petrova", None)
    fake.archive(ticket)
    events, cursor = await poll(bridge, cursor)
    assert [c.ticket.status for c in changes(events)] == []  # closed already: same state
    assert ticket not in cursor  # archived tickets are no longer read


async def test_comments_after_the_cursor_started_are_not_lost(zx: ZenlixHelpers) -> None:
    bridge, fake, world = zx.bridge, zx.fake, zx.world
    ticket = await create(bridge)
    fake.comment_as(world.olga, ticket, "before the cursor")
    await zx.clock.sleep(1.1)  # the next comment is a second later
    cursor = await start(bridge)
    await zx.clock.sleep(1.1)
    fake.comment_as(world.olga, ticket, "after the cursor")

    events: list[ChangeEvent] = []
    for _ in range(zx.bridge.settings.idle_max_cycles + 1):
        more, cursor = await poll(bridge, cursor)
        events.extend(more)

    assert [m.text for m in messages(events)] == ["after the cursor"]


async def test_quiet_tickets_are_read_less_often(zx: ZenlixHelpers) -> None:
    bridge, fake, world = zx.bridge, zx.fake, zx.world
    tickets = [await create(bridge, text=f"ticket {n}") for n in range(6)]
    cursor = await start(bridge)
    reads = []
    for _ in range(12):
        before = fake.requests["get_ticket_comments"]
        _, cursor = await poll(bridge, cursor)
        reads.append(fake.requests["get_ticket_comments"] - before)
    assert sum(reads[-4:]) < 6 * 4 / 2  # far fewer than one read per ticket and cycle

    fake.comment_as(world.olga, tickets[3], "an answer on a quiet ticket")
    waited = 0
    found: list[RemoteMessage] = []
    while not found:
        waited += 1
        events, cursor = await poll(bridge, cursor)
        found = messages(events)
    assert waited <= bridge.settings.idle_max_cycles
    # The ticket is busy now: read again in the very next cycle.
    fake.comment_as(world.olga, tickets[3], "and a follow-up")
    events, cursor = await poll(bridge, cursor)
    assert [m.text for m in messages(events)] == ["and a follow-up"]


async def test_the_budget_cuts_a_cycle_short(tmp_path: Path) -> None:
    async with zenlix_desk(tmp_path, ZENLIX_CALLS_PER_CYCLE="5") as zx:
        bridge, fake, world = zx.bridge, zx.fake, zx.world
        tickets = [await create(bridge, text=f"ticket {n}") for n in range(8)]
        cursor = await start(bridge)
        for ticket in tickets:
            fake.comment_as(world.olga, ticket, f"answer to {ticket}")
        seen: list[str] = []
        rounds = 0
        for _ in range(bridge.settings.idle_max_cycles + 1):
            while True:
                before = fake.request_count
                result = await bridge.fetch_changes(cursor)
                assert fake.request_count - before <= 5
                assert result.cursor is not None
                cursor = result.cursor
                seen.extend(m.text for m in messages(result.events))
                rounds += 1
                if not result.more:
                    break
        assert sorted(seen) == sorted(f"answer to {t}" for t in tickets)
        assert rounds > bridge.settings.idle_max_cycles + 1  # some cycles said `more`


async def test_deleted_and_bad_cursor(zx: ZenlixHelpers) -> None:
    bridge, fake = zx.bridge, zx.fake
    ticket = await create(bridge)
    cursor = await start(bridge)
    fake.delete_ticket(ticket)  # by an admin
    _, cursor = await poll(bridge, cursor)
    for _ in range(bridge.settings.idle_max_cycles + 1):
        _, cursor = await poll(bridge, cursor)
    assert ticket not in cursor
    for bad in ("not a cursor", "{}", '{"v": 1, "n": "x", "s": "", "l": 0, "m": 0, "t": {}}'):
        with pytest.raises(Invalid):
            await bridge.fetch_changes(bad)


async def test_a_failing_poll_changes_nothing(zx: ZenlixHelpers) -> None:
    bridge, fake, world = zx.bridge, zx.fake, zx.world
    ticket = await create(bridge)
    cursor = await start(bridge)
    fake.comment_as(world.olga, ticket, "answer")
    fake.fail_next("500", mode="get_ticket_comments")
    with pytest.raises(Unavailable):
        for _ in range(bridge.settings.idle_max_cycles + 1):
            _, cursor = await poll(bridge, cursor)
    events: list[ChangeEvent] = []
    for _ in range(bridge.settings.idle_max_cycles + 1):
        more, cursor = await poll(bridge, cursor)
        events.extend(more)
    assert [m.text for m in messages(events)] == ["answer"]


async def test_check_reports_the_installation(zx: ZenlixHelpers) -> None:
    report = await zx.bridge.check()
    assert report.ok
    assert report.lines[0].endswith("signed in as Desk Bot (chief)")
    assert "default client: Telegram Guest" in report.lines
    zx.fake.revoke_keys()
    zx.fake.users[zx.world.service].password = "changed"
    broken = await zx.bridge.check()
    assert not broken.ok and "refused the sign-in" in broken.lines[-1]


async def test_hanging_server_is_unavailable(tmp_path: Path) -> None:
    async with zenlix_desk(tmp_path, ZENLIX_TIMEOUT_SECONDS="0.3") as zx:
        zx.fake.hang_seconds = 5.0
        zx.fake.fail_next("hang", mode="get_unit_list")
        with pytest.raises(Unavailable, match="no answer in time"):
            await zx.bridge.list_departments()
        assert [d.title for d in await zx.bridge.list_departments()] == ["Support", "Billing"]


async def test_a_ticket_listed_unreadably_stops_no_other_and_is_read_on_its_own(
    zx: ZenlixHelpers, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 13: one row of `ticket_list` the bridge cannot read is logged and
    skipped; the others are polled as usual, and that ticket is read with
    `ticket_view` instead."""
    bridge, fake, world = zx.bridge, zx.fake, zx.world
    tickets = [await create(bridge, text=f"ticket {n}") for n in range(3)]
    cursor = await start(bridge)
    fake.unreadable.add(tickets[1])
    for ticket in tickets:
        fake.comment_as(world.olga, ticket, f"answer on {ticket}")

    events: list[ChangeEvent] = []
    for _ in range(bridge.settings.idle_max_cycles + 1):
        more, cursor = await poll(bridge, cursor)
        events.extend(more)

    assert sorted(m.text for m in messages(events)) == sorted(
        f"answer on {ticket}" for ticket in tickets)
    assert f"unreadable Zenlix ListedTicket (id {tickets[1]}" in caplog.text
