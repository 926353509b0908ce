"""The Omnidesk bridge: the provider contract over Omnidesk's REST API.

Omnidesk is agent-side: the company's agents work the cases, in Omnidesk or
in Telegram. The bridge opens cases for Telegram customers, posts their
messages as the customer (`user_id`), agents' replies as their own staff
member (`staff_id`, once linked with `/link <staff e-mail>`), notes, and
status/priority/assignee changes; it polls for what changed (see
`bridges.omnidesk.cursor`) within the API budget (see
`bridges.omnidesk.budget`).

Omnidesk has no idempotency keys and echoes none, so the bridge keeps its own
in `BridgeState`: which case or message a key produced (a retried call returns
it instead of posting twice), and which key produced a message, a case or an
update (the poll hands it back as `origin_key`, so the bot recognises its own
doing even before it stored the message id the post returned).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx

from bridges.base import (
    AgentIdentity,
    Attachment,
    AuthorKind,
    BridgeBase,
    Capabilities,
    Capability,
    ChangeEvent,
    Changes,
    CheckReport,
    CustomerIdentity,
    Department,
    KnowledgeArticle,
    MessageAdded,
    NewTicket,
    RemoteMessage,
    RemoteTicket,
    TicketChanged,
    TicketUpdate,
)
from bridges.content import check_update
from bridges.errors import BridgeError, Invalid, NotFound, RateLimited
from bridges.omnidesk.budget import ApiBudget, PollPacer
from bridges.omnidesk.client import PROVIDER, OmnideskClient
from bridges.omnidesk.config import OmnideskSettings
from bridges.omnidesk.cursor import CaseSeen, PollCursor
from bridges.omnidesk.mapping import (
    article_from_payload,
    content_of,
    department_from_group,
    epoch,
    message_from_payload,
    multipart,
    new_case_fields,
    ticket_from_case,
    ticket_priority,
    ticket_status,
)
from bridges.omnidesk.models import (
    Case,
    CustomChannel,
    Group,
    KbArticle,
    Message,
    Payload,
    Staff,
    listing,
    one,
)
from bridges.registry import BridgeDeps, register
from bridges.state import BridgeState

LIST_PAGE = 100  # the API's largest page
CASES_PER_POLL = 100  # changed cases read per `fetch_changes`; more → `more=True`
MESSAGE_PAGE = 10  # newest-first page of a changed case's messages
# With a backlog and little credit, a poll waits for this many calls: one
# listing then serves several reads (a twentieth of the cycle is listing).
AMORTISED_CYCLE = 20
STAFF_TTL_SECONDS = 3600.0
STAFF_MISS_RETRY_SECONDS = 60.0  # an unknown staff id reloads the list at most this often
GROUPS_TTL_SECONDS = 300.0
MIN_SEARCH_LENGTH = 3  # kb_article.json's `search` takes 3+ characters
_STATE_KEY_LIMIT = 200

P = TypeVar("P", bound=Payload)


@dataclass(frozen=True, slots=True)
class _Posted:
    """What an idempotency key produced."""

    case_id: int
    message_id: int | None


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


@dataclass(slots=True)
class _Cache(Generic[P]):
    """A list the API rarely changes, by id, and when it was loaded."""

    loaded_at: float | None = None
    items: dict[int, P] = field(default_factory=dict)


class OmnideskBridge(BridgeBase):
    name = PROVIDER
    capabilities: Capabilities = frozenset(Capability)
    # Omnidesk takes files as multipart uploads: the bot hands over the bytes.
    uploads_files: bool = True

    def __init__(
        self,
        settings: OmnideskSettings,
        state: BridgeState,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        cases_per_poll: int = CASES_PER_POLL,
    ) -> None:
        if cases_per_poll < 1:
            raise ValueError("cases_per_poll must be at least 1")
        self.settings = settings
        self.cases_per_poll = cases_per_poll
        self._client = OmnideskClient(settings, transport=transport, clock=clock)
        self._state = state
        self._clock = clock
        # One full cycle's worth of credit: a listing, its cases, staff names.
        self._pacer = PollPacer(self._client.budget, clock, burst=cases_per_poll + 5)
        self._staff: _Cache[Staff] = _Cache()
        self._groups: _Cache[Group] = _Cache()
        # Credit the next poll waits for: a listing, plus the cases the last
        # cycle saw waiting when it ran out of credit.
        self._calls_wanted = 1

    @property
    def budget(self) -> ApiBudget:
        return self._client.budget

    # -- contract: checks and people ---------------------------------------

    async def check(self) -> CheckReport:
        lines: list[str] = []
        try:
            staff = await self._staff_members(refresh=True)
            me = _staff_by_email(staff.values(), self.settings.staff_email)
            if me is None or not me.active:
                return CheckReport(ok=False, lines=[
                    f"omnidesk: {self.settings.staff_email} is not an active staff member"])
            lines.append(f"omnidesk: {self.settings.base_url} as {me.staff_full_name} "
                         f"<{me.staff_email}> (staff {me.staff_id})")
            groups = await self.list_departments()
            lines.append(f"omnidesk: {len(groups)} active groups"
                         + (f": {', '.join(g.title for g in groups)}" if groups else ""))
            ok = True
            if self.settings.channel:
                ok, line = await self._check_channel(self.settings.channel)
                lines.append(line)
            else:
                lines.append("omnidesk: no custom channel; customers are known by their "
                             "Telegram username or shared phone/e-mail")
            lines.append(f"omnidesk: {self.budget.describe()}")
        except BridgeError as exc:
            return CheckReport(ok=False, lines=[*lines, f"omnidesk: {type(exc).__name__}: {exc}"])
        return CheckReport(ok=ok, lines=lines)

    async def _check_channel(self, channel: str) -> tuple[bool, str]:
        answer = await self._client.get("custom_channels.json")
        channels, _ = listing(answer.data, "custom_channel", CustomChannel)
        found = next((c for c in channels if c.channel_api_key == channel), None)
        if found is None:
            return False, f"omnidesk: custom channel {channel} does not exist"
        if not found.active:
            return False, f"omnidesk: custom channel {channel} ({found.title}) is disabled"
        return True, f"omnidesk: custom channel {channel} ({found.title})"

    def missing_contact(self, customer: CustomerIdentity) -> bool:
        # A custom channel knows the customer by their Telegram id; otherwise
        # Omnidesk needs a username, a phone or an e-mail to tell who it is.
        if self.settings.channel:
            return False
        return not (customer.username or customer.phone or customer.email)

    async def find_agent(self, login: str, secret: str | None = None) -> AgentIdentity | None:
        """The active staff member whose e-mail is `login` (staff.json)."""
        login = login.strip()
        if "@" not in login:
            return None
        staff = _staff_by_email((await self._staff_members(refresh=True)).values(), login)
        if staff is None or not staff.active:
            return None
        return AgentIdentity(agent_ref=staff.staff_email, full_name=_staff_name(staff),
                             remote_agent_id=str(staff.staff_id))

    async def list_departments(self) -> Sequence[Department]:
        groups = await self._active_groups()
        return [department_from_group(group) for group in groups]

    async def search_articles(
        self, query: str, *, for_agent: bool, limit: int = 20
    ) -> Sequence[KnowledgeArticle]:
        query = query.strip()
        if limit < 1 or 0 < len(query) < MIN_SEARCH_LENGTH:
            return []
        params: dict[str, str | int] = {"limit": LIST_PAGE}
        if query:
            params["search"] = query
        answer = await self._client.get("kb_article.json", params)
        articles, _ = listing(answer.data, "kb_article", KbArticle)
        # The API answers a staff member: it lists drafts and staff-only
        # articles too. Customers see only public, active ones.
        visible = [a for a in articles
                   if a.active and (for_agent or a.access_type == "public")]
        return [article_from_payload(article) for article in visible[:limit]]

    # -- contract: tickets ---------------------------------------------------

    async def create_ticket(self, ticket: NewTicket) -> RemoteTicket:
        content = content_of(ticket.text, ticket.attachments)
        key = ticket.idempotency_key
        if key and (posted := await self._posted(key)) is not None:
            return await self.get_ticket(str(posted.case_id))
        fields = new_case_fields(ticket, self.settings.channel, content)
        if ticket.attachments:
            form, files = multipart("case", fields, ticket.attachments)
            answer = await self._client.post_multipart("cases.json", form, files)
        else:
            answer = await self._client.post("cases.json", {"case": fields})
        case = one(answer.data, "case", Case)
        records = {_state_key("case", case.case_id): json.dumps(
            {"key": key, "user_id": case.user_id})}
        if case.user_id:
            records[_state_key("user", case.user_id)] = ticket.customer.customer_ref
        if key:
            records[_state_key("key", key)] = json.dumps({"case": case.case_id})
        await self._state.set_many(records)
        return ticket_from_case(case, staff_names=await self._staff_names([case.staff_id]),
                                customer_ref=ticket.customer.customer_ref)

    async def get_ticket(self, remote_ticket_id: str) -> RemoteTicket:
        case = await self._case(_case_id(remote_ticket_id))
        return await self._ticket(case)

    async def update_ticket(
        self,
        remote_ticket_id: str,
        update: TicketUpdate,
        actor: AgentIdentity | None = None,
        idempotency_key: str | None = None,
    ) -> RemoteTicket:
        # `actor` is not sent: a case change through the API is recorded as
        # the API key's staff member whoever asks; the bot names the actor.
        check_update(update, self.capabilities, provider=PROVIDER)
        case_id = _case_id(remote_ticket_id)
        fields: dict[str, str | int] = {}
        if update.status is not None:
            fields["status"] = update.status.value
        if update.priority is not None:
            fields["priority"] = update.priority.value
        if update.assignee is not None:
            fields["staff_id"] = await self._assignable_staff(update.assignee)
        if update.unassign:
            fields["staff_id"] = 0
        if not fields:
            return await self.get_ticket(remote_ticket_id)
        answer = await self._client.put(f"cases/{case_id}.json", {"case": fields})
        case = one(answer.data, "case", Case)
        changed_now = epoch(case.updated_at) >= epoch(answer.server_time) - 1
        if idempotency_key and changed_now:
            # The poll will see the case at this `updated_at`: the change is
            # ours. (A no-op left an older `updated_at`, maybe someone else's.)
            await self._state.set(_state_key("update", case_id), json.dumps(
                {"key": idempotency_key, "updated_at": epoch(case.updated_at)}))
        return await self._ticket(case)

    async def refer(
        self, remote_ticket_id: str, target: str, actor: AgentIdentity | None = None
    ) -> RemoteTicket:
        """Hand the case to a group (by title or id) or a staff member (by
        e-mail or id)."""
        case_id = _case_id(remote_ticket_id)
        target = target.strip()
        folded = target.casefold()
        group = _group_named(await self._active_groups(), target) or _group_named(
            await self._active_groups(refresh=True), target)
        fields: dict[str, int]
        if group is not None:
            fields = {"group_id": group.group_id}
        else:
            staff = await self._staff_members(refresh=True)
            member = next((s for s in staff.values() if s.active and (
                str(s.staff_id) == target or s.staff_email.casefold() == folded)), None)
            if member is None:
                raise NotFound(f"no Omnidesk group or staff member {target!r}", provider=PROVIDER)
            fields = {"staff_id": member.staff_id}
        answer = await self._client.put(f"cases/{case_id}.json", {"case": fields})
        return await self._ticket(one(answer.data, "case", Case))

    # -- contract: messages --------------------------------------------------

    async def post_customer_message(
        self,
        remote_ticket_id: str,
        customer: CustomerIdentity,
        text: str,
        attachments: Sequence[Attachment] = (),
        idempotency_key: str | None = None,
    ) -> RemoteMessage:
        content = content_of(text, attachments)
        case_id = _case_id(remote_ticket_id)
        if idempotency_key and (posted := await self._posted(idempotency_key)) is not None:
            return _replayed(posted, case_id, idempotency_key, AuthorKind.CUSTOMER, text)
        user_id = await self._customer_user_id(case_id, customer)
        message = await self._post_message(
            case_id, "messages.json", {"content": content, "user_id": user_id}, attachments)
        await self._remember(idempotency_key, case_id, message,
                             {_state_key("user", user_id): customer.customer_ref})
        return message_from_payload(message, str(case_id), staff_names={},
                                    origin_key=idempotency_key)

    async def post_agent_reply(
        self,
        remote_ticket_id: str,
        agent: AgentIdentity,
        text: str,
        attachments: Sequence[Attachment] = (),
        idempotency_key: str | None = None,
    ) -> RemoteMessage:
        content = content_of(text, attachments)
        case_id = _case_id(remote_ticket_id)
        if idempotency_key and (posted := await self._posted(idempotency_key)) is not None:
            return _replayed(posted, case_id, idempotency_key, AuthorKind.AGENT, text)
        staff_id = await self._linked_staff(agent)
        fields: dict[str, str | int] = {"content": content}
        if staff_id is not None:
            fields["staff_id"] = staff_id
        else:
            # Unlinked: the API key's staff member answers, naming the agent.
            fields["content"] = f"{agent.full_name}: {content}"
        message = await self._post_message(case_id, "messages.json", fields, attachments)
        await self._remember(idempotency_key, case_id, message)
        return message_from_payload(message, str(case_id),
                                    staff_names=await self._staff_names([message.staff_id]),
                                    origin_key=idempotency_key)

    async def post_note(
        self,
        remote_ticket_id: str,
        agent: AgentIdentity,
        text: str,
        idempotency_key: str | None = None,
    ) -> RemoteMessage:
        content = content_of(text, ())
        case_id = _case_id(remote_ticket_id)
        if idempotency_key and (posted := await self._posted(idempotency_key)) is not None:
            return _replayed(posted, case_id, idempotency_key, AuthorKind.NOTE, text)
        # note.json takes no author: every note is the API key's staff
        # member's (providers/omnidesk.md, "Messages and notes"), so anyone
        # else's note carries their name.
        linked = await self._linked_staff(agent)
        if linked is None or linked != await self._api_staff_id():
            content = f"{agent.full_name}: {content}"
        message = await self._post_message(case_id, "note.json", {"content": content}, ())
        await self._remember(idempotency_key, case_id, message)
        return message_from_payload(message, str(case_id),
                                    staff_names=await self._staff_names([message.staff_id]),
                                    origin_key=idempotency_key)

    # -- contract: the change feed --------------------------------------------

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

    def calls_left(self) -> int | None:
        return self._client.budget.calls_left

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- polling -----------------------------------------------------------------

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
            cases, _ = listing(answer.data, "case", Case)
            for case in cases:
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
            cases, total = listing(answer.data, "case", Case)
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
                    unlisted = max(0, total - page * LIST_PAGE)
                    return _Cycle(read, more=True,
                                  waiting=len(cases) - index + unlisted + len(recheck))
                recheck.pop(case.case_id, None)
                read.append(await self._read_case(case, seen, position, settled_before))
                done.add(case.case_id)
            if len(cases) < LIST_PAGE or page * LIST_PAGE >= total:
                break
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
            batch, total = listing(answer.data, "message", Message)
            for message in batch:
                newest = max(newest, message.message_id)
                old = (after_id is not None and message.message_id <= after_id) or (
                    after_time is not None and epoch(message.created_at) < after_time)
                if old:
                    return _oldest_first(found), False, newest
                found[message.message_id] = message
            if len(batch) < MESSAGE_PAGE or page * MESSAGE_PAGE >= total:
                return _oldest_first(found), True, newest
            page += 1

    async def _newest_message_id(self, case_id: int) -> int:
        try:
            answer = await self._client.get(f"cases/{case_id}/messages.json", {
                "order": "desc", "limit": 1, "page": 1})
        except NotFound:
            return 0
        batch, _ = listing(answer.data, "message", Message)
        return max((message.message_id for message in batch), default=0)

    async def _events(self, read: list[_ReadCase], *, floor: int) -> list[ChangeEvent]:
        """Normalised events, with the keys of the bridge's own calls as
        `origin_key` (one state read for the whole cycle)."""
        keys: list[str] = []
        for item in read:
            case_id = item.case.case_id
            keys += [_state_key("case", case_id), _state_key("update", case_id),
                     _state_key("user", item.case.user_id)]
            keys += [_state_key("origin", m.message_id) for m in item.messages]
        state = await self._state.get_many(keys)
        names = await self._staff_names(
            [item.case.staff_id for item in read]
            + [m.staff_id for item in read for m in item.messages])
        events: list[ChangeEvent] = []
        for item in read:
            case_id = item.case.case_id
            create_key = _json(state.get(_state_key("case", case_id))).get("key")
            for position, message in enumerate(item.messages):
                origin = state.get(_state_key("origin", message.message_id))
                if origin is None and position == 0 and item.reached_first_message:
                    origin = create_key  # the opening message of a case we created
                events.append(MessageAdded(message_from_payload(
                    message, str(case_id), staff_names=names, origin_key=origin)))
            if item.announce:
                ticket = ticket_from_case(
                    item.case, staff_names=names,
                    customer_ref=state.get(_state_key("user", item.case.user_id)))
                update = _json(state.get(_state_key("update", case_id)))
                events.append(TicketChanged(ticket, origin_key=_change_origin(
                    item, update, create_key, floor)))
        return events

    # -- helpers -----------------------------------------------------------------

    async def _case(self, case_id: int) -> Case:
        answer = await self._client.get(f"cases/{case_id}.json")
        return one(answer.data, "case", Case)

    async def _ticket(self, case: Case) -> RemoteTicket:
        customer_ref = await self._state.get(_state_key("user", case.user_id))
        return ticket_from_case(case, staff_names=await self._staff_names([case.staff_id]),
                                customer_ref=customer_ref)

    async def _post_message(
        self,
        case_id: int,
        endpoint: str,
        fields: dict[str, str | int],
        attachments: Sequence[Attachment],
    ) -> Message:
        uri = f"cases/{case_id}/{endpoint}"
        if attachments:
            form, files = multipart("message", fields, attachments)
            answer = await self._client.post_multipart(uri, form, files)
        else:
            answer = await self._client.post(uri, {"message": fields})
        return one(answer.data, "message", Message)

    async def _customer_user_id(self, case_id: int, customer: CustomerIdentity) -> int:
        """The Omnidesk user to post as: the id the bot stored, else the one
        recorded when the bridge opened the case, else the case's own."""
        if customer.remote_customer_id and customer.remote_customer_id.isdigit():
            return int(customer.remote_customer_id)
        recorded = _json(await self._state.get(_state_key("case", case_id))).get("user_id")
        if isinstance(recorded, int) and recorded > 0:
            return recorded
        case = await self._case(case_id)
        if not case.user_id:
            raise Invalid(f"case {case_id} has no customer to post as", provider=PROVIDER)
        return case.user_id

    async def _posted(self, key: str) -> _Posted | None:
        record = _json(await self._state.get(_state_key("key", key)))
        if not isinstance(record.get("case"), int):
            return None
        message_id = record.get("message")
        return _Posted(record["case"], message_id if isinstance(message_id, int) else None)

    async def _remember(
        self, key: str | None, case_id: int, message: Message,
        also: dict[str, str] | None = None,
    ) -> None:
        """What the key produced (a retry returns it) and which key produced
        the message (the poll hands it back as `origin_key`)."""
        records = dict(also or {})
        if key:
            records[_state_key("key", key)] = json.dumps(
                {"case": case_id, "message": message.message_id})
            records[_state_key("origin", message.message_id)] = key
        await self._state.set_many(records)

    async def _staff_members(
        self, *, refresh: bool = False, wanted: Iterable[int] = ()
    ) -> dict[int, Staff]:
        """staff.json, cached for an hour; an unknown id reloads it, at most
        once a minute (a deleted staff member must not cost a call per poll)."""
        now = self._clock()
        loaded_at = self._staff.loaded_at
        stale = loaded_at is None or now - loaded_at > STAFF_TTL_SECONDS
        missing = any(i and i not in self._staff.items for i in wanted) and (
            loaded_at is None or now - loaded_at > STAFF_MISS_RETRY_SECONDS)
        if refresh or stale or missing:
            members = await self._all_pages("staff.json", "staff", Staff)
            self._staff = _Cache(now, {member.staff_id: member for member in members})
        return dict(self._staff.items)

    async def _staff_names(self, staff_ids: Iterable[int]) -> dict[int, str]:
        wanted = [i for i in staff_ids if i]
        if not wanted:
            return {}
        staff = await self._staff_members(wanted=wanted)
        return {staff_id: _staff_name(member) for staff_id, member in staff.items()}

    async def _api_staff_id(self) -> int | None:
        staff = await self._staff_members()
        me = _staff_by_email(staff.values(), self.settings.staff_email)
        return me.staff_id if me else None

    async def _linked_staff(self, agent: AgentIdentity) -> int | None:
        """The agent's own active staff member, or None to act as the API
        key's: a stale link must not dead-letter a reply."""
        remote = (agent.remote_agent_id or "").strip()
        if not remote.isdigit():
            return None
        staff = await self._staff_members(wanted=[int(remote)])
        member = staff.get(int(remote))
        return member.staff_id if member is not None and member.active else None

    async def _assignable_staff(self, agent: AgentIdentity) -> int:
        staff_id = await self._linked_staff(agent)
        if staff_id is None:
            raise Invalid(f"{agent.full_name} has no linked Omnidesk account: /link <e-mail> "
                          "first", provider=PROVIDER)
        return staff_id

    async def _active_groups(self, *, refresh: bool = False) -> list[Group]:
        """groups.json, cached for five minutes."""
        now = self._clock()
        loaded_at = self._groups.loaded_at
        if refresh or loaded_at is None or now - loaded_at > GROUPS_TTL_SECONDS:
            groups = await self._all_pages("groups.json", "group", Group)
            self._groups = _Cache(now, {group.group_id: group for group in groups})
        return [group for group in self._groups.items.values() if group.active]

    async def _all_pages(self, uri: str, key: str, model: type[P]) -> list[P]:
        items: list[P] = []
        page = 1
        while True:
            answer = await self._client.get(uri, {"limit": LIST_PAGE, "page": page})
            batch, total = listing(answer.data, key, model)
            items += batch
            if len(batch) < LIST_PAGE or len(items) >= total:
                return items
            page += 1


@register(PROVIDER)
async def create_omnidesk_bridge(deps: BridgeDeps) -> OmnideskBridge:
    return OmnideskBridge(OmnideskSettings.from_env(deps.env), BridgeState(deps.engine, PROVIDER),
                          transport=deps.transport)


# -- rules ---------------------------------------------------------------------


def _case_id(remote_ticket_id: str) -> int:
    value = remote_ticket_id.strip()
    if not (value.isascii() and value.isdigit()) or not 0 < int(value) < 2**63:
        raise NotFound(f"no Omnidesk case {remote_ticket_id!r}", provider=PROVIDER)
    return int(value)


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


def _replayed(
    posted: _Posted, case_id: int, key: str, kind: AuthorKind, text: str
) -> RemoteMessage:
    """A retried post: the message the key produced before, not a second one."""
    if posted.case_id != case_id or posted.message_id is None:
        raise Invalid(f"idempotency key {key!r} was used on case {posted.case_id}",
                      provider=PROVIDER)
    return RemoteMessage(remote_message_id=str(posted.message_id), remote_ticket_id=str(case_id),
                         author_kind=kind, text=text, origin_key=key)


def _oldest_first(found: dict[int, Message]) -> list[Message]:
    return [found[message_id] for message_id in sorted(found)]


def _group_named(groups: Iterable[Group], target: str) -> Group | None:
    folded = target.casefold()
    return next((group for group in groups if str(group.group_id) == target
                 or group.group_title.casefold() == folded), None)


def _staff_by_email(staff: Iterable[Staff], email: str) -> Staff | None:
    wanted = email.strip().casefold()
    return next((member for member in staff if member.staff_email.casefold() == wanted), None)


def _staff_name(member: Staff) -> str:
    return member.staff_full_name or member.staff_email or f"staff {member.staff_id}"


def _state_key(kind: str, value: object) -> str:
    """BridgeState keys are at most 255 characters: long keys are hashed."""
    key = f"{kind}:{value}"
    if len(key) <= _STATE_KEY_LIMIT:
        return key
    return f"{kind}#{hashlib.sha256(str(value).encode()).hexdigest()}"


def _json(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
