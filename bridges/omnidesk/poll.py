"""Polling Omnidesk (`fetch_changes`): cases updated since a watermark,
oldest first, and the new messages of those only, within the API budget
(providers/omnidesk.md, "What this means for a bridge"; `budget.py` for the
pacing, `cursor.py` for what the cursor keeps).

One cycle costs 1 + changed calls whatever the number of open cases.
Omnidesk echoes no idempotency keys: the keys of the bridge's own calls are
found in its records (`records.py`) and handed back as `origin_key`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bridges.base import ChangeEvent, Changes, MessageAdded, TicketChanged
from bridges.errors import NotFound, RateLimited
from bridges.omnidesk.budget import ApiBudget, PollPacer
from bridges.omnidesk.client import PROVIDER, OmnideskClient
from bridges.omnidesk.cursor import CaseSeen, PollCursor
from bridges.omnidesk.mapping import (
    epoch,
    message_from_payload,
    ticket_from_case,
    ticket_priority,
    ticket_status,
)
from bridges.omnidesk.models import Case, Message, listing
from bridges.omnidesk.records import json_record, state_key
from bridges.state import BridgeState

LIST_PAGE = 100  # the API's largest page
CASES_PER_POLL = 100  # changed cases read per `fetch_changes`; more → `more=True`
MESSAGE_PAGE = 10  # newest-first page of a changed case's messages
# With a backlog and little credit, a poll waits for this many calls: one
# listing then serves several reads (a twentieth of the cycle is listing).
AMORTISED_CYCLE = 20

StaffNames = Callable[[Iterable[int]], Awaitable[dict[int, str]]]


@dataclass(slots=True)
class _ReadCase:
    """A changed case and its new messages, oldest first."""

    case: Case
    messages: list[Message]
    reached_first_message: bool
    announce: bool  # status, priority or assignee may have changed
    known: bool  # the cursor had seen it before


@dataclass(slots=True)
class _Cycle:
    read: list[_ReadCase]
    more: bool  # stopped early: more is waiting
    waiting: int = 0  # cases seen still to read when it stopped for lack of credit


class Poller:
    def __init__(self, client: OmnideskClient, state: BridgeState, pacer: PollPacer,
                 staff_names: StaffNames, cases_per_poll: int = CASES_PER_POLL) -> None:
        self._client = client
        self._state = state
        self._pacer = pacer
        self._staff_names = staff_names
        self.cases_per_poll = cases_per_poll
        # Credit the next poll waits for: a listing, plus the cases the last
        # cycle saw waiting when it ran out of credit.
        self._calls_wanted = 1

    @property
    def budget(self) -> ApiBudget:
        return self._client.budget

    async def fetch_changes(self, cursor: str | None) -> Changes:
        if cursor is None:
            return await self._start()
        position = PollCursor.decode(cursor)
        # Budget pacing (bridges/omnidesk/budget.py): after a cycle cut short
        # for credit, wait until the cases seen waiting can all be read.
        available = self._pacer.available()
        needed = 1.0 if self._pacer.probe_due else min(
            float(self._calls_wanted), float(AMORTISED_CYCLE), self._pacer.burst)
        if available < needed:
            raise RateLimited(
                f"polling paced to spare the budget ({self.budget.describe()})",
                retry_after=self._pacer.seconds_until_credit(needed), provider=PROVIDER)
        spent_before = self._client.request_count
        try:
            cycle = await self._read_changed_cases(position, spent_before)
            events = await self._events(cycle.read, floor=position.floor)
        except RateLimited as exc:
            self._pacer.block(exc.retry_after)
            raise
        finally:
            self._pacer.spend(self._client.request_count - spent_before)
        self._calls_wanted = 1 + cycle.waiting
        position.forget_oldest()
        return Changes(events=events, cursor=position.encode(), more=cycle.more)

    async def _start(self) -> Changes:
        """A cursor at "now" (the server's clock), returning no history. Cases
        touched within the last second get their newest message recorded, so
        that what they already hold is not taken for new."""
        spent_before = self._client.request_count
        try:
            answer = await self._client.get("cases.json", {
                "sort": "updated_at_desc", "limit": LIST_PAGE, "page": 1})
            floor = epoch(answer.server_time) - 1
            position = PollCursor(watermark=floor, floor=floor)
            for case in listing(answer.data, "case", Case).items:
                if epoch(case.updated_at) < floor:
                    break
                newest = await self._newest_message_id(case.case_id)
                position.cases[case.case_id] = _seen(case, newest, settled=False)
        finally:
            self._pacer.spend(self._client.request_count - spent_before)
        return Changes(events=(), cursor=position.encode())

    async def _read_changed_cases(self, position: PollCursor, spent_before: int) -> _Cycle:
        """Cases updated since the watermark, oldest first, and their new
        messages, until done or out of case or call budget.

        Listing goes by keyset rather than by page number: the next listing
        starts at the last case's `updated_at`, so a case updated meanwhile
        moves behind the window instead of shifting another one out of it.

        A case that looks as recorded but was read before its second was over
        is re-checked (one call), after the changed cases and only once they
        are all done: a busy second then costs one re-check per case, not one
        per poll round."""
        read: list[_ReadCase] = []
        recheck: dict[int, tuple[Case, CaseSeen, int]] = {}
        done: set[int] = set()
        since, page = position.listing_start(), 1
        while True:
            if not self._has_credit(spent_before):
                return _Cycle(read, more=True, waiting=1 + len(recheck))
            answer = await self._client.get("cases.json", {
                "from_updated_time": since, "sort": "updated_at_asc",
                "limit": LIST_PAGE, "page": page})
            listed = listing(answer.data, "case", Case)
            cases = listed.items
            # A case read in the second of its `updated_at` (a second of slack
            # for the `Date` header) may still change within that second.
            settled_before = epoch(answer.server_time) - 1
            for index, case in enumerate(cases):
                seen = position.cases.get(case.case_id)
                if case.case_id in done or (seen is not None and seen.settled
                                            and _same(seen, case)):
                    continue
                if seen is not None and _same(seen, case):
                    recheck[case.case_id] = (case, seen, settled_before)
                    continue
                if len(done) >= self.cases_per_poll:
                    return _Cycle(read, more=True)
                if not self._has_credit(spent_before):
                    unlisted = max(0, (listed.total or 0) - page * LIST_PAGE)
                    return _Cycle(read, more=True,
                                  waiting=len(cases) - index + unlisted + len(recheck))
                recheck.pop(case.case_id, None)
                read.append(await self._read_case(case, seen, position, settled_before))
                done.add(case.case_id)
            if listed.last_page(page, LIST_PAGE):
                break
            if not cases:  # a full page of unreadable cases: past it
                page += 1
                continue
            last = epoch(cases[-1].updated_at)
            # A full page within one second cannot move the keyset: page on.
            since, page = (since, page + 1) if last <= since else (last, 1)
        for position_in_queue, (case, seen, settled_before) in enumerate(recheck.values()):
            if not self._has_credit(spent_before):
                return _Cycle(read, more=True, waiting=len(recheck) - position_in_queue)
            read.append(await self._read_case(case, seen, position, settled_before))
        return _Cycle(read, more=False)

    def _has_credit(self, spent_before: int) -> bool:
        return self._pacer.available() - (self._client.request_count - spent_before) >= 1

    async def _read_case(
        self, case: Case, seen: CaseSeen | None, position: PollCursor, settled_before: int
    ) -> _ReadCase:
        if seen is not None:
            messages, first, newest = await self._new_messages(
                case.case_id, after_id=seen.last_message_id)
        else:
            messages, first, newest = await self._new_messages(
                case.case_id, after_time=position.floor)
        updated = epoch(case.updated_at)
        previous_last = seen.last_message_id if seen else 0
        position.cases[case.case_id] = _seen(
            case, max(newest, previous_last), settled=updated < settled_before)
        position.watermark = max(position.watermark, updated)
        announce = seen is None or (seen.status, seen.priority, seen.staff_id) != (
            ticket_status(case).value, ticket_priority(case).value, case.staff_id)
        return _ReadCase(case, messages, first, announce, known=seen is not None)

    async def _new_messages(
        self, case_id: int, *, after_id: int | None = None, after_time: int | None = None
    ) -> tuple[list[Message], bool, int]:
        """Messages after `after_id` (or created at/after `after_time`),
        oldest first; whether the case's first message was reached; the
        newest id seen. Reads newest first in small pages and stops at the
        first message already seen (providers/omnidesk.md)."""
        found: dict[int, Message] = {}
        newest, page = 0, 1
        while True:
            try:
                answer = await self._client.get(f"cases/{case_id}/messages.json", {
                    "order": "desc", "limit": MESSAGE_PAGE, "page": page})
            except NotFound:
                return [], False, newest  # the case was deleted for good meanwhile
            batch = listing(answer.data, "message", Message)
            for message in batch.items:
                newest = max(newest, message.message_id)
                old = (after_id is not None and message.message_id <= after_id) or (
                    after_time is not None and epoch(message.created_at) < after_time)
                if old:
                    return _oldest_first(found), False, newest
                found[message.message_id] = message
            if batch.last_page(page, MESSAGE_PAGE):
                # The first message is known only if the oldest could be read.
                complete = batch.entries == len(batch.items)
                return _oldest_first(found), complete, newest
            page += 1

    async def _newest_message_id(self, case_id: int) -> int:
        try:
            answer = await self._client.get(f"cases/{case_id}/messages.json", {
                "order": "desc", "limit": 1, "page": 1})
        except NotFound:
            return 0
        batch = listing(answer.data, "message", Message).items
        return max((message.message_id for message in batch), default=0)

    async def _events(self, read: list[_ReadCase], *, floor: int) -> list[ChangeEvent]:
        """Normalised events, with the keys of the bridge's own calls as
        `origin_key` (one state read for the whole cycle)."""
        keys: list[str] = []
        for item in read:
            case_id = item.case.case_id
            keys += [state_key("case", case_id), state_key("update", case_id),
                     state_key("user", item.case.user_id)]
            keys += [state_key("origin", m.message_id) for m in item.messages]
        state = await self._state.get_many(keys)
        names = await self._staff_names(
            [item.case.staff_id for item in read]
            + [m.staff_id for item in read for m in item.messages])
        events: list[ChangeEvent] = []
        for item in read:
            case_id = item.case.case_id
            create_key = json_record(state.get(state_key("case", case_id))).get("key")
            for position, message in enumerate(item.messages):
                origin = state.get(state_key("origin", message.message_id))
                if origin is None and position == 0 and item.reached_first_message:
                    origin = create_key  # the opening message of a case we created
                events.append(MessageAdded(message_from_payload(
                    message, str(case_id), staff_names=names, origin_key=origin)))
            if item.announce:
                ticket = ticket_from_case(
                    item.case, staff_names=names,
                    customer_ref=state.get(state_key("user", item.case.user_id)))
                update = json_record(state.get(state_key("update", case_id)))
                events.append(TicketChanged(ticket, origin_key=_change_origin(
                    item, update, create_key, floor)))
        return events



# -- rules ---------------------------------------------------------------------


def _seen(case: Case, last_message_id: int, *, settled: bool) -> CaseSeen:
    return CaseSeen(
        updated_at=epoch(case.updated_at),
        last_message_id=last_message_id,
        status=ticket_status(case).value,
        priority=ticket_priority(case).value,
        staff_id=case.staff_id,
        settled=settled,
    )


def _same(seen: CaseSeen, case: Case) -> bool:
    """The case is as the entry recorded it (whether that can be trusted is
    the entry's `settled`)."""
    return seen == _seen(case, seen.last_message_id, settled=seen.settled)


def _change_origin(
    item: _ReadCase, update: dict[str, Any], create_key: str | None, floor: int
) -> str | None:
    """Whose doing a case change is: our last update if the case is still at
    the `updated_at` it left, or our create for a case we opened that the
    poller meets for the first time."""
    if update.get("updated_at") == epoch(item.case.updated_at):
        key = update.get("key")
        return key if isinstance(key, str) else None
    if not item.known and create_key and epoch(item.case.created_at) >= floor:
        return create_key
    return None


def _oldest_first(found: dict[int, Message]) -> list[Message]:
    return [found[message_id] for message_id in sorted(found)]


