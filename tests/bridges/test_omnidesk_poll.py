"""The Omnidesk change feed: what comes back, exactly once, at what cost, and
how the poller paces itself within the API budget. A `FakeClock` drives the
fake's dates and rate windows and the bridge's pacing alike."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import httpx
import pytest

# contract.py imports every harness module: load it before ours, not from it.
import tests.bridges.contract  # noqa: F401
from bot.sandbox.omnidesk import FakeClock, FakeOmnidesk
from bridges.base import (
    AgentIdentity,
    AuthorKind,
    ChangeEvent,
    CustomerIdentity,
    MessageAdded,
    NewTicket,
    Priority,
    TicketChanged,
    TicketStatus,
    TicketUpdate,
)
from bridges.errors import Invalid, RateLimited, Unavailable
from bridges.omnidesk import OmnideskBridge
from bridges.omnidesk.cursor import MAX_TRACKED_CASES
from tests.bridges.harness_omnidesk import omnidesk_bridge

ANNA = CustomerIdentity(customer_ref="1001", full_name="Anna K", username="anna_k")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_750_000_000)


@pytest.fixture
async def desk(clock: FakeClock) -> AsyncIterator[FakeOmnidesk]:
    async with FakeOmnidesk(clock=clock) as desk:
        yield desk


@pytest.fixture
async def bridge(desk: FakeOmnidesk, clock: FakeClock,
                 tmp_path: Path) -> AsyncIterator[OmnideskBridge]:
    async with omnidesk_bridge(desk, tmp_path, clock=clock) as bridge:
        yield bridge


async def start(bridge: OmnideskBridge) -> str:
    changes = await bridge.fetch_changes(None)
    assert changes.cursor is not None and not changes.events
    return changes.cursor


async def drain(bridge: OmnideskBridge, cursor: str) -> tuple[list[ChangeEvent], str]:
    events: list[ChangeEvent] = []
    for _ in range(100):
        changes = await bridge.fetch_changes(cursor)
        assert changes.cursor is not None
        events += changes.events
        cursor = changes.cursor
        if not changes.more:
            return events, cursor
    raise AssertionError("kept reporting more")


def texts(events: list[ChangeEvent]) -> list[str]:
    return [e.message.text for e in events if isinstance(e, MessageAdded)]


def changes_of(events: list[ChangeEvent]) -> list[TicketChanged]:
    return [e for e in events if isinstance(e, TicketChanged)]


async def open_case(bridge: OmnideskBridge, text: str = "It is on fire",
                    key: str | None = None) -> int:
    ticket = await bridge.create_ticket(NewTicket(ANNA, "Printer", text, idempotency_key=key))
    return int(ticket.remote_ticket_id)


# -- what arrives ------------------------------------------------------------------


async def test_replies_typed_in_omnidesk_arrive_with_author_html_and_files(
    desk: FakeOmnidesk, bridge: OmnideskBridge, clock: FakeClock
) -> None:
    boris = desk.add_staff("boris@support.example", "Boris B")
    case_id = await open_case(bridge)
    cursor = await start(bridge)
    clock.advance(10)
    desk.staff_replies(case_id, html="<p>Restart it, <b>please</b></p><p>Then call</p>",
                       staff_id=boris, files=[("log.png", b"\x89PNG", "image/png")])
    desk.staff_adds_note(case_id, "Customer is VIP", staff_id=boris)
    desk.user_replies(case_id, "Done")

    events, _ = await drain(bridge, cursor)

    reply, note, answer = [e.message for e in events if isinstance(e, MessageAdded)]
    assert (reply.author_kind, reply.author_name, reply.author_remote_id) == (
        AuthorKind.AGENT, "Boris B", str(boris))
    assert reply.text == "Restart it, please\nThen call"
    assert reply.html == "<p>Restart it, <b>please</b></p><p>Then call</p>"
    [file] = reply.attachments
    assert (file.file_name, file.kind, file.mime_type, file.size) == (
        "log.png", "photo", "image/png", 4)
    assert file.url is not None
    async with httpx.AsyncClient() as http:
        assert (await http.get(file.url)).content == b"\x89PNG"
    assert (note.author_kind, note.text) == (AuthorKind.NOTE, "Customer is VIP")
    assert (answer.author_kind, answer.author_name) == (AuthorKind.CUSTOMER, None)
    assert all(e.message.origin_key is None for e in events if isinstance(e, MessageAdded))


async def test_status_priority_and_assignee_changes_in_omnidesk(
    desk: FakeOmnidesk, bridge: OmnideskBridge, clock: FakeClock
) -> None:
    boris = desk.add_staff("boris@support.example", "Boris B")
    case_id = await open_case(bridge)
    cursor = await start(bridge)
    clock.advance(10)
    desk.assign(case_id, boris)
    desk.set_priority(case_id, "critical")

    events, cursor = await drain(bridge, cursor)
    clock.advance(10)
    desk.close(case_id)
    closed, cursor = await drain(bridge, cursor)
    clock.advance(10)
    desk.case(case_id).update(deleted=True, _updated=int(clock()))  # moved to trash
    desk.set_status(case_id, "open")
    trashed, _ = await drain(bridge, cursor)

    [changed] = changes_of(events)
    assert (changed.ticket.assignee_name, changed.ticket.priority, changed.origin_key) == (
        "Boris B", Priority.CRITICAL, None)
    assert [c.ticket.status for c in changes_of(closed)] == [TicketStatus.CLOSED]
    assert changes_of(trashed) == []  # open again, but in the trash: still closed


async def test_own_calls_come_back_with_their_keys_once(
    desk: FakeOmnidesk, bridge: OmnideskBridge, clock: FakeClock
) -> None:
    cursor = await start(bridge)
    clock.advance(5)
    case_id = await open_case(bridge, "Opening", key="create:7")
    agent = AgentIdentity("tg:501", "Olga", remote_agent_id=str(desk.api_staff_id))
    await bridge.post_customer_message(str(case_id), ANNA, "More", idempotency_key="post:8")
    reply = await bridge.post_agent_reply(str(case_id), agent, "On it", idempotency_key="post:9")
    again = await bridge.post_agent_reply(str(case_id), agent, "On it", idempotency_key="post:9")
    await bridge.update_ticket(str(case_id), TicketUpdate(status=TicketStatus.WAITING),
                               idempotency_key="provider.update_ticket:1")

    seen: list[ChangeEvent] = []
    for _ in range(4):  # several cycles, in and past the busy second
        events, cursor = await drain(bridge, cursor)
        seen += events
        clock.advance(1)

    assert again.remote_message_id == reply.remote_message_id
    assert len(desk.messages_of(case_id)) == 3
    messages = [e.message for e in seen if isinstance(e, MessageAdded)]
    assert [(m.text, m.origin_key) for m in messages] == [
        ("Opening", "create:7"), ("More", "post:8"), ("On it", "post:9")]
    assert [(c.ticket.status, c.origin_key) for c in changes_of(seen)] == [
        (TicketStatus.WAITING, "provider.update_ticket:1")]
    clock.advance(5)
    desk.close(case_id)  # someone else's change: no key
    events, _ = await drain(bridge, cursor)
    assert [(c.ticket.status, c.origin_key) for c in changes_of(events)] == [
        (TicketStatus.CLOSED, None)]


async def test_a_no_op_update_does_not_claim_someone_elses_change(
    desk: FakeOmnidesk, bridge: OmnideskBridge, clock: FakeClock
) -> None:
    case_id = await open_case(bridge)
    cursor = await start(bridge)
    clock.advance(5)
    desk.close(case_id)  # closed in Omnidesk...
    clock.advance(3)
    await bridge.update_ticket(str(case_id), TicketUpdate(status=TicketStatus.CLOSED),
                               idempotency_key="provider.update_ticket:2")  # ...and by the bot

    events, _ = await drain(bridge, cursor)

    assert [(c.ticket.status, c.origin_key) for c in changes_of(events)] == [
        (TicketStatus.CLOSED, None)]


# -- the watermark ---------------------------------------------------------------------------


async def test_a_change_in_the_second_it_was_read_is_not_lost(
    desk: FakeOmnidesk, bridge: OmnideskBridge, clock: FakeClock
) -> None:
    case_id = await open_case(bridge)
    cursor = await start(bridge)
    clock.advance(5)
    desk.staff_replies(case_id, "first")
    first, cursor = await drain(bridge, cursor)
    desk.staff_replies(case_id, "second")  # the same second: updated_at does not move
    second, cursor = await drain(bridge, cursor)
    clock.advance(0.5)
    desk.staff_replies(case_id, "third")
    clock.advance(0.6)  # the next second: the read was of a second not over yet
    third, cursor = await drain(bridge, cursor)
    clock.advance(3)
    settling, cursor = await drain(bridge, cursor)
    desk.reset_counts()
    quiet, _ = await drain(bridge, cursor)

    assert (texts(first), texts(second), texts(third), settling) == (
        ["first"], ["second"], ["third"], [])
    assert quiet == []
    assert desk.count() == 1  # settled: the listing alone, no message reads


async def test_cases_sharing_a_second_across_page_boundaries(
    desk: FakeOmnidesk, clock: FakeClock, tmp_path: Path
) -> None:
    async with omnidesk_bridge(desk, tmp_path, clock=clock, cases_per_poll=2) as bridge:
        cursor = await start(bridge)
        clock.advance(5)
        ids = [desk.open_case(f"case {n}", f"message {n}") for n in range(5)]
        desk.seed_cases(150, until=clock() + 1, spacing=0)  # 150 more in one later second
        clock.advance(1)

        events, cursor = await drain(bridge, cursor)
        clock.advance(5)
        desk.staff_replies(ids[2], "late")
        late, _ = await drain(bridge, cursor)

    got = texts(events)
    assert len(got) == len(set(got)) == 155
    assert {f"message {n}" for n in range(5)} | {f"bulk message {n}" for n in range(150)} == set(
        got)
    assert len(changes_of(events)) == 155
    assert texts(late) == ["late"]


async def test_a_case_updated_between_polls_is_not_skipped(
    desk: FakeOmnidesk, clock: FakeClock, tmp_path: Path
) -> None:
    async with omnidesk_bridge(desk, tmp_path, clock=clock, cases_per_poll=1) as bridge:
        cursor = await start(bridge)
        clock.advance(5)
        ids = [desk.open_case(f"case {n}", f"message {n}") for n in range(3)]
        clock.advance(5)
        first = await bridge.fetch_changes(cursor)
        desk.staff_replies(ids[0], "moved to the end")  # already read: jumps behind the rest
        assert first.cursor is not None and first.more
        events, _ = await drain(bridge, first.cursor)

    assert texts([*first.events, *events]) == [
        "message 0", "message 1", "message 2", "moved to the end"]


async def test_the_cursor_stays_bounded_and_forgotten_cases_still_work(
    desk: FakeOmnidesk, bridge: OmnideskBridge, clock: FakeClock
) -> None:
    cursor = await start(bridge)
    clock.advance(5)
    total = MAX_TRACKED_CASES + 50
    ids = []
    for number in range(total):
        ids.append(desk.open_case(f"case {number}", f"opening {number}"))
        clock.advance(1)
    clock.advance(5)
    events, cursor = await drain(bridge, cursor)
    clock.advance(5)
    _, cursor = await drain(bridge, cursor)  # settles the last ones

    state = json.loads(cursor)
    assert len(events) == 2 * total
    assert len(state["c"]) <= MAX_TRACKED_CASES
    assert str(ids[0]) not in state["c"]
    assert len(cursor) < 60 * MAX_TRACKED_CASES
    clock.advance(5)
    desk.staff_replies(ids[0], "for a forgotten case")
    desk.set_priority(ids[0], "high")
    desk.staff_replies(ids[-1], "for a remembered case")
    later, _ = await drain(bridge, cursor)
    assert texts(later) == ["for a forgotten case", "for a remembered case"]
    assert [c.ticket.remote_ticket_id for c in changes_of(later)] == [str(ids[0])]


async def test_a_failed_poll_loses_nothing(
    desk: FakeOmnidesk, bridge: OmnideskBridge, clock: FakeClock
) -> None:
    case_id = await open_case(bridge)
    cursor = await start(bridge)
    clock.advance(5)
    desk.staff_replies(case_id, "one")
    other = desk.open_case("other", "two")
    desk.fail_next(500, path=f"/cases/{other}/messages")

    with pytest.raises(Unavailable):
        await bridge.fetch_changes(cursor)
    events, _ = await drain(bridge, cursor)  # the same cursor again

    assert texts(events) == ["one", "two"]


async def test_a_cursor_from_elsewhere_is_invalid(bridge: OmnideskBridge) -> None:
    for bad in ("17", '{"v": 2, "w": 1, "f": 1, "c": {}}', '{"v": 1, "w": 1, "f": 1, '
                '"c": {"5": [1, 2]}}', "[]"):
        with pytest.raises(Invalid):
            await bridge.fetch_changes(bad)


# -- cost and budget -----------------------------------------------------------------------


@pytest.mark.parametrize("changed", [0, 1, 25])
async def test_a_cycle_costs_one_listing_plus_one_read_per_changed_case(
    desk: FakeOmnidesk, bridge: OmnideskBridge, clock: FakeClock, changed: int
) -> None:
    ids = desk.seed_cases(2_000)
    cursor = await start(bridge)
    await bridge.find_agent(desk.staff_email)  # staff names cached, as after a first cycle
    clock.advance(15)
    for case_id in ids[:changed]:
        desk.staff_replies(case_id, "a reply")
    clock.advance(15)
    desk.reset_counts()

    changes = await bridge.fetch_changes(cursor)

    assert desk.count() == 1 + changed
    assert desk.count("GET /api/cases.json") == 1
    read = {path for _, path, _ in desk.request_log if path.endswith("/messages.json")}
    assert read == {f"/api/cases/{case_id}/messages.json" for case_id in ids[:changed]}
    assert len(texts(list(changes.events))) == changed
    assert all(query.get("order") == "desc" for _, path, query in desk.request_log
               if path.endswith("/messages.json"))


async def test_polling_slows_down_instead_of_draining_the_budget(
    desk: FakeOmnidesk, bridge: OmnideskBridge, clock: FakeClock
) -> None:
    desk.rate_limit(500, per="hour")
    clock.now = (clock() // 3600) * 3600  # the start of a window
    ids = desk.seed_cases(300, until=clock() - 60)
    cursor = await start(bridge)
    refused = polls = 0
    read_after_refill = []
    for tick in range(250):  # an hour and a bit of polls every 15 s, 20 changed cases each
        clock.advance(15)
        for case_id in ids[(tick * 20) % 300:(tick * 20) % 300 + 20]:
            desk.staff_replies(case_id, f"tick {tick}")
        try:
            changes = await bridge.fetch_changes(cursor)
        except RateLimited as exc:
            refused += 1
            assert exc.retry_after is not None and exc.retry_after > 0
            continue
        polls += 1
        assert changes.cursor is not None
        cursor = changes.cursor
        assert desk.calls_left is not None and desk.calls_left >= bridge.budget.reserve
        if tick >= 239:  # the window is over: the refill is seen and spent on the backlog
            read_after_refill.append(len(texts(list(changes.events))))

    assert polls > 10 and refused > 10
    assert desk.rate_limited == 0
    assert max(read_after_refill) > 50


@pytest.mark.parametrize(("per", "style"), [("minute", "429"), ("hour", "403")])
async def test_a_rate_limited_poll_waits_before_asking_again(
    desk: FakeOmnidesk, bridge: OmnideskBridge, clock: FakeClock,
    per: Literal["minute", "hour"], style: Literal["429", "403"]
) -> None:
    desk.rate_limit(60, per=per, style=style)
    cursor = await start(bridge)
    desk.exhaust()
    with pytest.raises(RateLimited) as first:
        await bridge.fetch_changes(cursor)
    desk.reset_counts()
    with pytest.raises(RateLimited) as second:
        await bridge.fetch_changes(cursor)

    assert desk.count() == 0  # refused locally, not by spending a call
    assert second.value.retry_after is not None and second.value.retry_after > 0
    if style == "429":
        assert first.value.retry_after is not None
    clock.advance(3600)
    assert (await bridge.fetch_changes(cursor)).cursor is not None


# -- real-world answers ---------------------------------------------------------------


async def test_one_unreadable_case_or_message_stops_nothing_else(
    desk: FakeOmnidesk, bridge: OmnideskBridge, clock: FakeClock,
    caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 13: a record the bridge cannot read is logged with its id and
    skipped; the rest of the page is delivered."""
    first, second, third = [await open_case(bridge, f"case {n}") for n in range(3)]
    cursor = await start(bridge)
    clock.advance(10)
    for case_id in (first, second, third):
        desk.staff_replies(case_id, f"answer to {case_id}")
    broken = desk.staff_replies(first, "a second answer, unreadable")
    desk.staff_replies(first, "a third answer")
    desk.make_unreadable(case_id=second, message_id=broken["message_id"])

    events, cursor = await drain(bridge, cursor)

    assert sorted(texts(events)) == sorted(
        [f"answer to {first}", "a third answer", f"answer to {third}"])
    assert f"unreadable Omnidesk case (id {second}" in caplog.text
    assert f"unreadable Omnidesk message (id {broken['message_id']}" in caplog.text
    events, cursor = await drain(bridge, cursor)
    assert events == []  # the poll goes on from there


async def test_an_empty_page_in_the_real_world_shape_is_empty(
    desk: FakeOmnidesk, bridge: OmnideskBridge, clock: FakeClock
) -> None:
    cursor = await start(bridge)  # no case at all: `{"case": []}`
    clock.advance(10)
    events, cursor = await drain(bridge, cursor)
    assert events == []
    async with httpx.AsyncClient() as http:
        raw = await http.get(f"{desk.base_url}/api/cases.json",
                             auth=(desk.staff_email, desk.api_key))
    assert raw.json() == {"case": []}
