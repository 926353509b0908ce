"""The Omnidesk bridge beyond the contract suite: identities, acting staff,
files, groups, the knowledge base and referral, against the fake Omnidesk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# contract.py imports every harness module: load it before ours, not from it.
import tests.bridges.contract  # noqa: F401
from bot.sandbox.omnidesk import FakeOmnidesk
from bridges.base import (
    AgentIdentity,
    Attachment,
    AuthorKind,
    CustomerIdentity,
    MessageAdded,
    NewTicket,
    TicketStatus,
    TicketUpdate,
)
from bridges.errors import Invalid, NotFound
from bridges.omnidesk import OmnideskBridge
from bridges.registry import available
from tests.bridges.harness_omnidesk import omnidesk_bridge

ANNA = CustomerIdentity(customer_ref="1001", full_name="Anna K", username="anna_k")
NOBODY = CustomerIdentity(customer_ref="1002", full_name="No Contact")


@pytest.fixture
async def desk() -> AsyncIterator[FakeOmnidesk]:
    async with FakeOmnidesk() as desk:
        desk.add_channel("cch7")
        yield desk


@pytest.fixture
async def bridge(desk: FakeOmnidesk, tmp_path: Path) -> AsyncIterator[OmnideskBridge]:
    async with omnidesk_bridge(desk, tmp_path) as bridge:
        yield bridge


@pytest.fixture
async def channel_bridge(desk: FakeOmnidesk, tmp_path: Path) -> AsyncIterator[OmnideskBridge]:
    async with omnidesk_bridge(desk, tmp_path, env=desk.env(channel="cch7")) as bridge:
        yield bridge


async def open_case(bridge: OmnideskBridge, customer: CustomerIdentity = ANNA,
                    department_id: str | None = None) -> int:
    ticket = await bridge.create_ticket(NewTicket(customer, "Printer", "It is on fire",
                                                  department_id=department_id))
    return int(ticket.remote_ticket_id)


async def new_messages(bridge: OmnideskBridge, cursor: str) -> tuple[list[MessageAdded], str]:
    changes = await bridge.fetch_changes(cursor)
    assert changes.cursor is not None
    return [e for e in changes.events if isinstance(e, MessageAdded)], changes.cursor


def test_registers_itself() -> None:
    assert "omnidesk" in available()


# -- customers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("customer", "identity"),
    [
        (ANNA, {"type": "telegram", "telegram_data": "anna_k"}),
        (CustomerIdentity("7", "Pavel", username="@pavel"), {"telegram_data": "pavel"}),
        (CustomerIdentity("8", "Pyotr", phone="79261234567"), {"telegram_data": "+79261234567"}),
        (CustomerIdentity("9", "Eve", email="eve@mail.example"),
         {"type": "email", "user_email": "eve@mail.example"}),
    ],
)
async def test_customers_without_a_channel_are_known_by_telegram_data(
    desk: FakeOmnidesk, bridge: OmnideskBridge, customer: CustomerIdentity,
    identity: dict[str, str]
) -> None:
    ticket = await bridge.create_ticket(NewTicket(customer, "Hello", "Text"))

    case = desk.case(int(ticket.remote_ticket_id))
    user = desk.store.users[case["user_id"]]
    assert identity.items() <= user.items()
    assert user["user_full_name"] == customer.full_name
    assert ticket.remote_customer_id == str(case["user_id"])
    assert ticket.customer_ref == customer.customer_ref
    assert bridge.missing_contact(customer) is False


async def test_a_customer_with_no_contact_must_share_one(bridge: OmnideskBridge,
                                                          channel_bridge: OmnideskBridge) -> None:
    assert bridge.missing_contact(NOBODY) is True
    with pytest.raises(Invalid):
        await bridge.create_ticket(NewTicket(NOBODY, "Hello", "Text"))
    assert channel_bridge.missing_contact(NOBODY) is False


async def test_a_custom_channel_knows_customers_by_their_telegram_id(
    desk: FakeOmnidesk, channel_bridge: OmnideskBridge
) -> None:
    first = await channel_bridge.create_ticket(NewTicket(NOBODY, "One", "Text"))
    second = await channel_bridge.create_ticket(NewTicket(NOBODY, "Two", "Text"))

    case = desk.case(int(first.remote_ticket_id))
    user = desk.store.users[case["user_id"]]
    assert (case["channel"], user["user_custom_id"], user["user_custom_channel"]) == (
        "cch7", "1002", "cch7")
    assert first.remote_customer_id == second.remote_customer_id


async def test_customer_messages_are_posted_as_the_user(
    desk: FakeOmnidesk, bridge: OmnideskBridge
) -> None:
    case_id = await open_case(bridge)
    user_id = desk.case(case_id)["user_id"]
    # A later process knows the customer by the id the bot stored.
    stored = CustomerIdentity("1001", "Anna K", remote_customer_id=str(user_id))

    posted = await bridge.post_customer_message(str(case_id), stored, "More details")
    from_state = await bridge.post_customer_message(str(case_id), ANNA, "Even more")

    messages = desk.messages_of(case_id)
    assert [(m["user_id"], m["staff_id"], m["content"]) for m in messages[1:]] == [
        (user_id, 0, "More details"), (user_id, 0, "Even more")]
    assert posted.remote_message_id == str(messages[1]["message_id"])
    assert posted.author_kind is AuthorKind.CUSTOMER
    assert from_state.remote_ticket_id == str(case_id)


async def test_tickets_open_in_the_chosen_group(desk: FakeOmnidesk,
                                                bridge: OmnideskBridge) -> None:
    sales = desk.add_group("Sales")
    desk.add_group("Archive", active=False)
    tech = desk.add_group("Tech support")

    departments = await bridge.list_departments()
    case_id = await open_case(bridge, department_id=str(tech))

    assert [(d.remote_id, d.title) for d in departments] == [
        (str(sales), "Sales"), (str(tech), "Tech support")]
    assert desk.case(case_id)["group_id"] == tech
    with pytest.raises(Invalid):
        await open_case(bridge, department_id="sales")


async def test_files_go_up_as_bracketed_multipart(desk: FakeOmnidesk,
                                                  bridge: OmnideskBridge) -> None:
    scan = Attachment("scan.pdf", "application/pdf", 3, data=b"pdf")
    photo = Attachment("cat.jpg", "image/jpeg", 4, kind="photo", data=b"\xff\xd8ok")

    ticket = await bridge.create_ticket(NewTicket(ANNA, "Files", "See attached",
                                                  attachments=[scan, photo]))
    reply = await bridge.post_customer_message(ticket.remote_ticket_id, ANNA, "",
                                               attachments=[scan])

    opening, second = desk.messages_of(int(ticket.remote_ticket_id))
    assert [a["file_name"] for a in opening["attachments"]] == ["scan.pdf", "cat.jpg"]
    assert desk.file(opening["attachments"][1]["file_id"]).data == b"\xff\xd8ok"
    assert second["content"] == "📎 scan.pdf"  # content is required: the file is named
    assert [a.file_name for a in reply.attachments] == ["scan.pdf"]
    with pytest.raises(Invalid):
        await bridge.post_customer_message(ticket.remote_ticket_id, ANNA, "x",
                                           attachments=[Attachment("lost.txt")])


# -- agents ------------------------------------------------------------------------------


async def test_agents_link_by_staff_email(desk: FakeOmnidesk, bridge: OmnideskBridge) -> None:
    boris = desk.add_staff("Boris@Support.example", "Boris B")
    desk.add_staff("gone@support.example", "Gone G", active=False)

    linked = await bridge.find_agent("  boris@support.EXAMPLE ")

    assert linked == AgentIdentity("Boris@Support.example", "Boris B", str(boris))
    assert await bridge.find_agent("gone@support.example") is None
    assert await bridge.find_agent("nobody@support.example") is None
    assert await bridge.find_agent("boris") is None


async def test_replies_come_from_the_linked_staff_member(
    desk: FakeOmnidesk, bridge: OmnideskBridge
) -> None:
    boris = desk.add_staff("boris@support.example", "Boris B")
    case_id = await open_case(bridge)
    linked = AgentIdentity("tg:502", "Boris in Telegram", remote_agent_id=str(boris))
    unlinked = AgentIdentity("tg:503", "Vera")
    stale = AgentIdentity("tg:504", "Stale", remote_agent_id="99999")

    reply = await bridge.post_agent_reply(str(case_id), linked, "Try again")
    await bridge.post_agent_reply(str(case_id), unlinked, "Hello")
    await bridge.post_agent_reply(str(case_id), stale, "Still delivered")

    posted = [(m["staff_id"], m["content"]) for m in desk.messages_of(case_id)[1:]]
    assert posted == [(boris, "Try again"), (desk.api_staff_id, "Vera: Hello"),
                      (desk.api_staff_id, "Stale: Still delivered")]
    assert (reply.author_kind, reply.author_name, reply.author_remote_id) == (
        AuthorKind.AGENT, "Boris B", str(boris))


async def test_notes_are_the_api_staff_members_and_name_the_agent(
    desk: FakeOmnidesk, bridge: OmnideskBridge
) -> None:
    boris = desk.add_staff("boris@support.example", "Boris B")
    case_id = await open_case(bridge)
    api_agent = AgentIdentity("tg:501", "Olga", remote_agent_id=str(desk.api_staff_id))

    note = await bridge.post_note(str(case_id), AgentIdentity("tg:502", "Boris",
                                                              str(boris)), "VIP")
    await bridge.post_note(str(case_id), api_agent, "Checked")

    notes = [(m["note"], m["staff_id"], m["content"]) for m in desk.messages_of(case_id)[1:]]
    assert notes == [(True, desk.api_staff_id, "Boris: VIP"),
                     (True, desk.api_staff_id, "Checked")]
    assert note.author_kind is AuthorKind.NOTE


async def test_assigning_needs_a_linked_account(desk: FakeOmnidesk,
                                                bridge: OmnideskBridge) -> None:
    boris = desk.add_staff("boris@support.example", "Boris B")
    case_id = await open_case(bridge)

    ticket = await bridge.update_ticket(
        str(case_id), TicketUpdate(assignee=AgentIdentity("tg:502", "Boris", str(boris)),
                                   status=TicketStatus.WAITING))

    assert (ticket.assignee_remote_id, ticket.assignee_name) == (str(boris), "Boris B")
    assert ticket.status is TicketStatus.WAITING
    with pytest.raises(Invalid, match="/link"):
        await bridge.update_ticket(str(case_id),
                                   TicketUpdate(assignee=AgentIdentity("tg:503", "Vera")))
    with pytest.raises(Invalid):
        await bridge.update_ticket(str(case_id), TicketUpdate(
            assignee=AgentIdentity("tg:502", "Boris", str(boris)), unassign=True))


async def test_refer_hands_the_case_to_a_group_or_a_person(
    desk: FakeOmnidesk, bridge: OmnideskBridge
) -> None:
    billing = desk.add_group("Billing")
    boris = desk.add_staff("boris@support.example", "Boris B")
    case_id = await open_case(bridge)

    await bridge.refer(str(case_id), "billing")
    referred = await bridge.refer(str(case_id), "boris@support.example")

    assert (desk.case(case_id)["group_id"], desk.case(case_id)["staff_id"]) == (billing, boris)
    assert referred.assignee_name == "Boris B"
    with pytest.raises(NotFound):
        await bridge.refer(str(case_id), "Nobody")


# -- the knowledge base and the check ---------------------------------------------------------


async def test_knowledge_base_search(desk: FakeOmnidesk, bridge: OmnideskBridge) -> None:
    desk.add_article("Оплата картой", "<p>Нажмите <b>Оплатить</b></p>")
    desk.add_article("Карта лояльности", "Internal", access_type="staff_only")
    desk.add_article("Старая карта", "Retired", active=False)

    for_customers = await bridge.search_articles("карт", for_agent=False)
    for_agents = await bridge.search_articles("КАРТ", for_agent=True, limit=1)

    assert [(a.title, a.text, a.public) for a in for_customers] == [
        ("Оплата картой", "Нажмите Оплатить", True)]
    assert len(for_agents) == 1
    assert await bridge.search_articles("ка", for_agent=True) == []  # the API wants 3+
    assert len(await bridge.search_articles("", for_agent=True)) == 2


async def test_check_reports_the_account(desk: FakeOmnidesk, bridge: OmnideskBridge,
                                         channel_bridge: OmnideskBridge, tmp_path: Path) -> None:
    desk.add_group("Support")

    report = await bridge.check()
    with_channel = await channel_bridge.check()

    assert report.ok and with_channel.ok
    assert "Olga API" in report.lines[0]
    assert any("api_calls_left" in line for line in report.lines)
    assert any("cch7" in line for line in with_channel.lines)
    async with omnidesk_bridge(desk, tmp_path, env=desk.env(channel="cch404")) as missing:
        bad = await missing.check()
    assert not bad.ok
    assert any("cch404 does not exist" in line for line in bad.lines)
