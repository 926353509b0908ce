"""The Omnidesk bridge: the provider contract over Omnidesk's REST API.

Omnidesk is agent-side: the company's agents work the cases, in Omnidesk or
in Telegram. The bridge opens cases for Telegram customers, posts their
messages as the customer (`user_id`), agents' replies as their own staff
member (`staff_id`, once linked with `/link <staff e-mail>`), notes, and
status/priority/assignee changes; `poll.py` polls for what changed within
the API budget (`budget.py`).

Omnidesk has no idempotency keys and echoes none, so the bridge keeps its own
in `BridgeState` (`records.py`): which case or message a key produced (a
retried call returns it instead of posting twice), and which key produced a
message, a case or an update (the poll hands it back as `origin_key`, so the
bot recognises its own doing even before it stored the message id the post
returned).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import httpx

from bridges.base import (
    AgentIdentity,
    Attachment,
    AuthorKind,
    BridgeBase,
    Capabilities,
    Capability,
    Changes,
    CheckReport,
    CustomerIdentity,
    Department,
    KnowledgeArticle,
    NewTicket,
    RemoteMessage,
    RemoteTicket,
    TicketUpdate,
)
from bridges.content import check_update
from bridges.errors import BridgeError, Invalid, NotFound
from bridges.omnidesk.budget import ApiBudget, PollPacer
from bridges.omnidesk.client import PROVIDER, OmnideskClient
from bridges.omnidesk.config import OmnideskSettings
from bridges.omnidesk.mapping import (
    article_from_payload,
    content_of,
    department_from_group,
    epoch,
    message_from_payload,
    multipart,
    new_case_fields,
    ticket_from_case,
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
from bridges.omnidesk.poll import CASES_PER_POLL, LIST_PAGE, Poller
from bridges.omnidesk.records import json_record, state_key
from bridges.registry import BridgeDeps, register
from bridges.state import BridgeState

STAFF_TTL_SECONDS = 3600.0
STAFF_MISS_RETRY_SECONDS = 60.0  # an unknown staff id reloads the list at most this often
GROUPS_TTL_SECONDS = 300.0
MIN_SEARCH_LENGTH = 3  # kb_article.json's `search` takes 3+ characters

P = TypeVar("P", bound=Payload)


@dataclass(frozen=True, slots=True)
class _Posted:
    """What an idempotency key produced."""

    case_id: int
    message_id: int | None


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
        self._poller = Poller(self._client, state, self._pacer, self._staff_names,
                              cases_per_poll)

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
        channels = listing(answer.data, "custom_channel", CustomChannel).items
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
        articles = listing(answer.data, "kb_article", KbArticle).items
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
        records = {state_key("case", case.case_id): json.dumps(
            {"key": key, "user_id": case.user_id})}
        if case.user_id:
            records[state_key("user", case.user_id)] = ticket.customer.customer_ref
        if key:
            records[state_key("key", key)] = json.dumps({"case": case.case_id})
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
            await self._state.set(state_key("update", case_id), json.dumps(
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
                             {state_key("user", user_id): customer.customer_ref})
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
        return await self._poller.fetch_changes(cursor)

    def calls_left(self) -> int | None:
        return self._client.budget.calls_left

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- helpers -----------------------------------------------------------------

    async def _case(self, case_id: int) -> Case:
        answer = await self._client.get(f"cases/{case_id}.json")
        return one(answer.data, "case", Case)

    async def _ticket(self, case: Case) -> RemoteTicket:
        customer_ref = await self._state.get(state_key("user", case.user_id))
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
        recorded = json_record(await self._state.get(state_key("case", case_id))).get("user_id")
        if isinstance(recorded, int) and recorded > 0:
            return recorded
        case = await self._case(case_id)
        if not case.user_id:
            raise Invalid(f"case {case_id} has no customer to post as", provider=PROVIDER)
        return case.user_id

    async def _posted(self, key: str) -> _Posted | None:
        record = json_record(await self._state.get(state_key("key", key)))
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
            records[state_key("key", key)] = json.dumps(
                {"case": case_id, "message": message.message_id})
            records[state_key("origin", message.message_id)] = key
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
            batch = listing(answer.data, key, model)
            items += batch.items
            if batch.last_page(page, LIST_PAGE):
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


def _replayed(
    posted: _Posted, case_id: int, key: str, kind: AuthorKind, text: str
) -> RemoteMessage:
    """A retried post: the message the key produced before, not a second one."""
    if posted.case_id != case_id or posted.message_id is None:
        raise Invalid(f"idempotency key {key!r} was used on case {posted.case_id}",
                      provider=PROVIDER)
    return RemoteMessage(remote_message_id=str(posted.message_id), remote_ticket_id=str(case_id),
                         author_kind=kind, text=text, origin_key=key)


def _group_named(groups: Iterable[Group], target: str) -> Group | None:
    folded = target.casefold()
    return next((group for group in groups if str(group.group_id) == target
                 or group.group_title.casefold() == folded), None)


def _staff_by_email(staff: Iterable[Staff], email: str) -> Staff | None:
    wanted = email.strip().casefold()
    return next((member for member in staff if member.staff_email.casefold() == wanted), None)


def _staff_name(member: Staff) -> str:
    return member.staff_full_name or member.staff_email or f"staff {member.staff_id}"
