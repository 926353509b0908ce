"""The Zenlix bridge: the provider contract over Zenlix's JSON API
(providers/zenlix.md).

What Zenlix lacks, the bridge keeps itself (records.py): which tickets it
created and for whom, which comments it posted (comments have no ids), the
API keys of linked agents. It writes text a strict MariaDB install stores
(text.py), finds customers' clients (customers.py), reads through
reader.py and polls through poll.py.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

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
    NewTicket,
    RemoteMessage,
    RemoteTicket,
    TicketStatus,
    TicketUpdate,
)
from bridges.content import check_update
from bridges.errors import AuthFailed, BridgeError, Forbidden, Invalid, NotFound, Unavailable
from bridges.registry import BridgeDeps, register
from bridges.state import BridgeState
from bridges.zenlix.client import ListUnreadable, ZenlixClient
from bridges.zenlix.clock import Clock, SystemClock
from bridges.zenlix.config import ZenlixSettings
from bridges.zenlix.cursor import Schedule
from bridges.zenlix.customers import ClientFinder
from bridges.zenlix.mapping import (
    detail_signature,
    first_line,
    message_id,
    name_key,
    normal_status,
    parse_server_time,
    priority_to_zenlix,
    server_time,
    text_fingerprint,
)
from bridges.zenlix.models import Comment, Created, TicketDetail, UserShort, list_of
from bridges.zenlix.poll import CLOSED_STATES, Activity, Poller
from bridges.zenlix.reader import ZenlixReader, parse, parse_rows, require_hash, ticket_detail
from bridges.zenlix.records import (
    AgentLink,
    Done,
    LockNote,
    OriginNote,
    OwnComment,
    Pending,
    TicketRecord,
    ZenlixRecords,
)
from bridges.zenlix.text import (
    COMMENT_LIMIT,
    clip,
    list_safe_head,
    split_for_comments,
    storable,
)

log = logging.getLogger("deskbridge.zenlix")

PROVIDER = "zenlix"
# Two tickets created in the same second may share a hash: one creation per
# second per server, counted from the previous answer (providers/zenlix.md).
CREATION_GAP_SECONDS = 1.0
NAME_LENGTH = 100
# `tickets.user_to_id` is a varchar(512) of numeric user ids, comma-separated;
# strict MariaDB fails on a longer one. 40 ids of up to 11 digits fit.
REFER_STAFF_LIMIT = 40
# "(12/34) " before each piece of a message split over several comments.
_PART_MARK_ROOM = 10


@dataclass(frozen=True, slots=True)
class Acting:
    """Whose key a call uses: a linked agent's, or (key None) the service
    account's, then speaking for `name` where Zenlix shows it."""

    key: SecretStr | None = None
    name: str | None = None
    user_hash: str | None = None
    remote_agent_id: str | None = None


SERVICE = Acting()


@dataclass(frozen=True, slots=True)
class _Chunk:
    text: str  # as sent: decoration + a piece of the message
    strip: int  # length of the decoration


class _LinkRevoked(Exception):
    """A linked agent's key was refused; the bridge falls back to the service account."""


class ZenlixBridge(BridgeBase):
    name = PROVIDER
    # No notes (every comment is visible to the client), no priority changes
    # and no file upload in the JSON API, no knowledge base, no "since" filter.
    capabilities: Capabilities = frozenset({
        Capability.CREATE, Capability.REPLY_AS_CUSTOMER, Capability.REPLY_AS_AGENT,
        Capability.ASSIGN, Capability.CLOSE_REOPEN, Capability.DEPARTMENTS,
        Capability.REFER, Capability.AGENT_ACCOUNTS,
    })
    uploads_files: bool = False

    def __init__(
        self,
        settings: ZenlixSettings,
        engine: AsyncEngine,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        adaptive: bool = True,
    ) -> None:
        self.settings = settings
        self._clock = clock or SystemClock()
        self.client = ZenlixClient(settings, transport=transport)
        self.records = ZenlixRecords(BridgeState(engine, PROVIDER))
        self.schedule = Schedule(adaptive=adaptive, idle_max_cycles=settings.idle_max_cycles)
        self._reader = ZenlixReader(self.client, self.records, settings, self._clock)
        self._customers = ClientFinder(self._reader, settings)
        self._activity = Activity()
        self._poller = Poller(self._reader, self.records, self.schedule, settings, self._clock,
                              self._activity)
        self._creating = asyncio.Lock()
        self._last_creation_at = -math.inf
        self._links: dict[str, AgentLink] = {}

    # -- contract: basics --------------------------------------------------------

    async def check(self) -> CheckReport:
        lines: list[str] = []
        try:
            name = await self.client.service_account_name()
            lines.append(f"Zenlix at {self.settings.base_url}: signed in as {name}"
                         f"{' (chief)' if await self._reader.service_is_chief() else ''}")
            units = await self._reader.units()
            subjects = await self._reader.named_list("get_subj_list")
            lines.append(f"{len(units)} departments, {len(subjects)} subjects")
            listed = await self._reader.ticket_list("in")
            lines.append(f"{len(listed)} incoming tickets visible to the service account")
            if self.settings.default_client:
                info = await self._reader.user_info(self.settings.default_client)
                if not info.fio or info.is_client != 1:
                    return CheckReport(ok=False, lines=[
                        *lines, "ZENLIX_DEFAULT_CLIENT is not a Zenlix client"])
                lines.append(f"default client: {info.fio}")
        except BridgeError as exc:
            return CheckReport(ok=False, lines=[*lines, f"Zenlix: {exc}"])
        return CheckReport(ok=True, lines=lines)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def list_departments(self) -> Sequence[Department]:
        units = await self._reader.units()
        return [Department(remote_id=str(unit.id), title=unit.name) for unit in units]

    # -- contract: tickets ---------------------------------------------------------

    async def create_ticket(self, ticket: NewTicket) -> RemoteTicket:
        body = storable(_with_files(ticket.text, ticket.attachments))
        if not body.strip():
            raise Invalid("a ticket needs text", provider=PROVIDER)
        key = ticket.idempotency_key
        if key is not None:
            outcome = await self.records.creation_outcome(key)
            if isinstance(outcome, Done):
                return await self.get_ticket(outcome.remote_id)
        client = await self._customers.client_for(ticket.customer)
        unit = await self._unit_for(ticket.department_id)
        subject_id = await self._subject_for(ticket.subject)
        # Never a text ticket_list cannot encode: it would empty the list (text.py).
        head = list_safe_head(storable(self._ticket_head(ticket, client, body)), body)
        text = head + body
        record = TicketRecord(
            id_ticket=0, customer_ref=ticket.customer.customer_ref, client=client,
            subject=clip(ticket.subject, 255) or first_line(body) or "…",
            strip=len(head), key=key)
        if key is not None:
            if isinstance(outcome, Pending):
                found = await self._find_created(outcome, client, text)
                if found is not None:
                    return await self._finish_creation(found, record)
            await self.records.start_creation(key, Pending(at=self._clock.time(), client=client))
        created = await self._create({
            "user_to_id": "0",  # to the department, not a person
            "subj": subject_id, "msg": text, "client_id": client,
            "unit_id": str(unit), "prio": priority_to_zenlix(ticket.priority),
        })
        detail = await self._verified(created, client, text)
        return await self._finish_creation(detail, record)

    async def get_ticket(self, remote_ticket_id: str) -> RemoteTicket:
        detail = await self._reader.view(remote_ticket_id)
        record = (await self._reader.records_of([remote_ticket_id])).get(remote_ticket_id)
        return await self._reader.remote(detail, record)

    async def post_customer_message(
        self,
        remote_ticket_id: str,
        customer: CustomerIdentity,
        text: str,
        attachments: Sequence[Attachment] = (),
        idempotency_key: str | None = None,
    ) -> RemoteMessage:
        # Zenlix cannot comment as a client: the service account speaks for
        # the customer, named, so agents in Zenlix see who wrote.
        decoration = storable(f"{clip(customer.full_name, NAME_LENGTH)} (Telegram): ")
        return await self._post(remote_ticket_id, AuthorKind.CUSTOMER, text, attachments,
                                SERVICE, decoration, customer.full_name, idempotency_key)

    async def post_agent_reply(
        self,
        remote_ticket_id: str,
        agent: AgentIdentity,
        text: str,
        attachments: Sequence[Attachment] = (),
        idempotency_key: str | None = None,
    ) -> RemoteMessage:
        acting = await self._acting(agent)
        try:
            return await self._post(remote_ticket_id, AuthorKind.AGENT, text, attachments,
                                    acting, self._decoration(acting, agent), agent.full_name,
                                    idempotency_key)
        except _LinkRevoked:
            fallback = Acting(name=agent.full_name)
            return await self._post(remote_ticket_id, AuthorKind.AGENT, text, attachments,
                                    fallback, self._decoration(fallback, agent),
                                    agent.full_name, idempotency_key)

    async def update_ticket(
        self,
        remote_ticket_id: str,
        update: TicketUpdate,
        actor: AgentIdentity | None = None,
        idempotency_key: str | None = None,
    ) -> RemoteTicket:
        check_update(update, self.capabilities, provider=PROVIDER)
        acting = await self._acting(actor)
        steps: list[Callable[[TicketDetail], Awaitable[Acting | None]]] = []
        if update.assignee is not None:
            assignee = await self._acting(update.assignee)
            steps.append(lambda detail: self._assign(detail, assignee, acting))
        if update.unassign:
            steps.append(lambda detail: self._release(detail, acting))
        if update.status is TicketStatus.CLOSED:
            steps.append(lambda detail: self._close(detail, acting))
        elif update.status is not None:  # open or waiting: Zenlix only has "not done"
            steps.append(lambda detail: self._reopen(detail, acting, unlock=actor is None))
        detail = await self._reader.view(remote_ticket_id)
        before = detail_signature(detail)
        holder = None
        try:
            for number, step in enumerate(steps):
                if number:
                    detail = await self._reader.view(remote_ticket_id)
                holder = await step(detail) or holder
        except BridgeError:
            # The bot changed its own state before asking; the next poll
            # reports the ticket as it really is, so the bot can set it back.
            self._activity.resync.add(remote_ticket_id)
            raise
        after = await self._reader.view(remote_ticket_id) if steps else detail
        if holder is not None:
            await self._note_lock(after, holder)
        if idempotency_key is not None and detail_signature(after) != before:
            await self.records.save_origin(remote_ticket_id, OriginNote(
                idempotency_key, detail_signature(after), at=self._clock.time()))
        self._activity.touched.add(remote_ticket_id)
        return await self._reader.remote_of(after)

    async def refer(
        self, remote_ticket_id: str, target: str, actor: AgentIdentity | None = None
    ) -> RemoteTicket:
        target = target.strip().lstrip("@").strip()
        if not target:
            raise Invalid("name a department or a Zenlix user to refer the ticket to",
                          provider=PROVIDER)
        acting = await self._acting(actor)
        detail = await self._reader.view(remote_ticket_id)
        unit, user = await self._refer_target(target, detail)
        addressed = user or await self._addressed_to_department(unit)
        mine = await self._seen_by(acting, detail)
        if normal_status(mine.status) == "lock_by_other":
            # Zenlix refuses to refer a ticket someone else holds, a chief's
            # request too (only unlocking is allowed): take it over first, as
            # closing does.
            await self._act(acting, "ticket_unlock", mine, "refer")
        # `msg` is appended to the ticket's text, not added as a comment
        # (providers/zenlix.md): nothing to add there.
        await self._act(acting, "refer_ticket", detail, "refer",
                        {"user_to_id": addressed, "msg": "", "unit_id": str(unit)})
        await self.records.save_lock_note(remote_ticket_id, None)
        self._activity.touched.add(remote_ticket_id)
        return await self.get_ticket(remote_ticket_id)

    # -- contract: people ------------------------------------------------------------

    def missing_contact(self, customer: CustomerIdentity) -> bool:
        """Zenlix's user search covers names, logins and phones, not e-mail:
        without a phone, a plausible full name or a default client there is
        nothing to find the customer by."""
        return self._customers.missing_contact(customer)

    async def find_agent(self, login: str, secret: str | None = None) -> AgentIdentity | None:
        """Links by signing in with the agent's password: the API key that
        returns is kept (it never expires); the password is not."""
        login = login.strip()
        if not login:
            return None
        if not secret:
            raise Invalid("linking a Zenlix account needs its password: "
                          "/link <login> <password>, in a private chat with the bot",
                          provider=PROVIDER)
        try:
            signed = await self.client.sign_in(login, SecretStr(secret))
        except AuthFailed:
            return None
        key = SecretStr(signed.uniq_id)
        me = await self._account_of(login, signed.fio, key)
        if me is not None and me.is_client == 1:
            return None  # a client's account cannot answer as an agent
        user_hash = me.user_hash if me is not None else None
        remote_agent_id = user_hash or f"login:{login}"
        link = AgentLink(login=login, api_key=key, fio=signed.fio or login, user_hash=user_hash)
        await self.records.save_agent(remote_agent_id, link)
        self._links[remote_agent_id] = link
        return AgentIdentity(agent_ref=login, full_name=link.fio, remote_agent_id=remote_agent_id)

    # -- contract: polling -------------------------------------------------------------

    async def fetch_changes(self, cursor: str | None) -> Changes:
        return await self._poller.fetch_changes(cursor)

    # -- creation --------------------------------------------------------------------

    async def _create(self, fields: dict[str, str]) -> Created:
        async with self._creating:
            wait = self._last_creation_at + CREATION_GAP_SECONDS - self._clock.time()
            if wait > 0:
                await self._clock.sleep(wait)
            try:
                answer = await self.client.call("create_ticket", fields)
            finally:
                self._last_creation_at = self._clock.time()
        created = parse(Created, answer)
        if not created.ticket_hash:
            raise Unavailable("Zenlix created a ticket without a hash", provider=PROVIDER)
        return created

    async def _verified(self, created: Created, client: str, text: str) -> TicketDetail:
        """The ticket the new hash leads to, checked to be the one just
        created: a hash shared with a ticket of the same second leads to the
        older one, and the new ticket cannot be reached through the API."""
        assert created.ticket_hash is not None
        detail = await self._reader.view(created.ticket_hash)
        if created.ticket_id is not None:
            same = detail.id_ticket == created.ticket_id
        else:
            same = detail.client_id == client and _same_text(detail.text, text)
        if not same:
            log.error("Zenlix ticket #%s shares its hash with ticket #%s (created in the same "
                      "second) and cannot be reached through the API; an admin may delete it",
                      created.ticket_id, detail.id_ticket)
            raise Unavailable("the new Zenlix ticket's hash is taken; creating it again",
                              provider=PROVIDER)
        return detail

    async def _find_created(self, pending: Pending, client: str, text: str) -> TicketDetail | None:
        """After an interrupted creation: the ticket the first attempt made,
        if it got as far as Zenlix (same client and text, created since)."""
        since = server_time(pending.at - 5, self.settings.zone)
        try:
            listed = await self._reader.ticket_list("out")
        except ListUnreadable:
            # Cannot look: creating again risks a duplicate, never a loss.
            log.warning("Zenlix's ticket list is unreadable; cannot tell whether an "
                        "interrupted creation reached Zenlix, creating the ticket again")
            return None
        for candidate in sorted(listed.values(), key=lambda t: -t.id_ticket):
            if (candidate.client_hash != client or candidate.date_created < since
                    or not text.startswith(candidate.text[:100])):
                continue
            detail = await self._reader.view(candidate.ticket_hash or "")
            if detail.id_ticket == candidate.id_ticket and _same_text(detail.text, text):
                return detail
        return None

    async def _finish_creation(self, detail: TicketDetail, record: TicketRecord) -> RemoteTicket:
        ticket_hash = detail.ticket_hash or ""
        record = replace(record, id_ticket=detail.id_ticket)
        await self.records.finish_creation(record.key, ticket_hash, record)
        self._reader.remember(ticket_hash, record)
        self._activity.touched.add(ticket_hash)
        return await self._reader.remote(detail, record)

    def _ticket_head(self, ticket: NewTicket, client: str, body: str) -> str:
        """What goes before the customer's words: who they are when the ticket
        is filed under the shared default client, and the subject when the
        text does not start with it (Zenlix's `subj` is a fixed list)."""
        head = ""
        customer = ticket.customer
        if client == self.settings.default_client and customer.remote_customer_id != client:
            contacts = [f"@{customer.username}" if customer.username else "",
                        customer.phone or "", customer.email or ""]
            details = ", ".join(part for part in contacts if part)
            head += f"{clip(customer.full_name, NAME_LENGTH)} (Telegram{': ' if details else ''}" \
                    f"{details})\n"
        subject = storable(ticket.subject.strip())
        if subject and not first_line(body).casefold().startswith(subject.casefold()):
            head += f"{subject}\n\n"
        return head

    # -- departments and subjects ----------------------------------------------------

    async def _unit_for(self, department_id: str | None) -> int:
        """A numeric `unit_id`, never "": strict MariaDB fails on anything else."""
        if department_id is not None:
            if not department_id.strip().isdigit():
                raise Invalid(f"not a Zenlix department id: {department_id!r}", provider=PROVIDER)
            return int(department_id)
        if self.settings.default_unit is not None:
            return self.settings.default_unit
        units = await self._reader.units()
        if not units:
            raise Invalid("Zenlix has no departments; set ZENLIX_DEFAULT_UNIT", provider=PROVIDER)
        return units[0].id

    async def _subject_for(self, subject: str) -> str:
        """`subj` is the id of a subject of `get_subj_list`; free text would be
        stored as no subject. The customer's own subject goes into the text."""
        subjects = await self._reader.named_list("get_subj_list")
        folded = subject.strip().casefold()
        for item in subjects:
            if item.name.strip().casefold() == folded:
                return str(item.id)
        configured = self.settings.default_subject
        if configured is not None:
            for item in subjects:
                if configured in (str(item.id), item.name):
                    return str(item.id)
            if configured.isdigit():
                return configured
        return str(subjects[0].id) if subjects else "0"

    # -- posting -----------------------------------------------------------------------

    async def _post(
        self,
        ticket_hash: str,
        kind: AuthorKind,
        text: str,
        attachments: Sequence[Attachment],
        acting: Acting,
        decoration: str,
        author_name: str,
        key: str | None,
    ) -> RemoteMessage:
        body = storable(_with_files(text, attachments))
        if not body.strip():
            raise Invalid("a message needs text", provider=PROVIDER)
        require_hash(ticket_hash)
        previous = await self.records.post_outcome(key) if key is not None else None
        if isinstance(previous, Done):
            return RemoteMessage(
                remote_message_id=previous.remote_id, remote_ticket_id=ticket_hash,
                author_kind=kind, text=text, author_name=author_name,
                created_at=parse_server_time(previous.created_at, self.settings.zone),
                origin_key=key)
        # `add_ticket_comment` on an unknown hash answers ok and stores a
        # comment attached to nothing: check the ticket exists first.
        await self._reader.view(ticket_hash)
        chunks = _chunks(decoration, body)
        author = acting.user_hash if acting.key is not None else self._reader.service_hash
        comments = await self._reader.comments(ticket_hash)
        if isinstance(previous, Pending) and previous.ticket_hash == ticket_hash:
            before = previous.comments_before  # an earlier attempt may have posted some
        else:
            before = len(comments)
        await self.records.start_post(ticket_hash, key, Pending(
            at=self._clock.time(), ticket_hash=ticket_hash, comments_before=before,
            chunks=[text_fingerprint(chunk.text) for chunk in chunks], author=author))
        positions = _locate(comments, chunks, before, author)
        for chunk in chunks[len(positions):]:
            try:
                await self._call_as(acting, "add_ticket_comment",
                                    {"ticket_hash": ticket_hash, "msg": chunk.text})
            except _LinkRevoked:
                if positions or chunk is not chunks[0]:
                    raise Unavailable("a linked agent's key was refused mid-message",
                                      provider=PROVIDER) from None
                raise
        comments = await self._reader.comments(ticket_hash)
        positions = _locate(comments, chunks, before, author)
        if len(positions) < len(chunks):
            raise Unavailable("Zenlix did not show the comments just added", provider=PROVIDER)
        first = comments[positions[0] - 1]
        await self._learn_author(acting, first.author)
        own = {position: OwnComment(first=positions[0], kind=kind.value, strip=chunk.strip,
                                    key=key if index == 0 else None)
               for index, (position, chunk) in enumerate(zip(positions, chunks, strict=True))}
        remote_id = message_id(ticket_hash, positions[0])
        await self.records.finish_post(ticket_hash, key, own,
                                       Done(remote_id=remote_id, created_at=first.dt))
        self._activity.touched.add(ticket_hash)
        return RemoteMessage(
            remote_message_id=remote_id, remote_ticket_id=ticket_hash, author_kind=kind,
            text=text, author_name=author_name, author_remote_id=first.author,
            created_at=parse_server_time(first.dt, self.settings.zone), origin_key=key)

    def _decoration(self, acting: Acting, agent: AgentIdentity) -> str:
        """A linked agent's comment carries their own name in Zenlix; the
        service account's is prefixed with the agent's."""
        if acting.key is not None:
            return ""
        return storable(f"{clip(agent.full_name, NAME_LENGTH)}: ")

    async def _learn_author(self, acting: Acting, author: str | None) -> None:
        if author is None:
            return
        if acting.key is None:
            self._reader.service_hash = author
        elif acting.user_hash is None and acting.remote_agent_id is not None:
            link = self._links.get(acting.remote_agent_id)
            if link is not None:
                link = replace(link, user_hash=author)
                self._links[acting.remote_agent_id] = link
                await self.records.save_agent(acting.remote_agent_id, link)

    # -- agents and actions --------------------------------------------------------------

    async def _acting(self, agent: AgentIdentity | None) -> Acting:
        if agent is None:
            return SERVICE
        remote_agent_id = agent.remote_agent_id
        if remote_agent_id:
            link = self._links.get(remote_agent_id) or await self.records.agent(remote_agent_id)
            if link is not None:
                self._links[remote_agent_id] = link
                return Acting(key=link.api_key, name=link.fio, user_hash=link.user_hash,
                              remote_agent_id=remote_agent_id)
        # A stale or missing link must not lose the reply: speak for the agent.
        return Acting(name=agent.full_name)

    async def _account_of(self, login: str, fio: str, key: SecretStr) -> UserShort | None:
        """The signed-in account's own row (for its user hash): the search
        finds it by login; its name tells it from other hits."""
        answer = await self.client.call("get_users_list", {"find_param": login}, key=key)
        rows = [row for row in parse_rows(UserShort, list_of(answer, "users"))
                if name_key(row.fio) == name_key(fio)]
        return rows[0] if len(rows) == 1 else None

    async def _call_as(self, acting: Acting, mode: str, fields: dict[str, str]) -> dict[str, Any]:
        if acting.key is None:
            return await self.client.call(mode, fields)
        try:
            return await self.client.call(mode, fields, key=acting.key)
        except AuthFailed:
            # The key stops working when the account is disabled or its key
            # reset: forget the link, the agent can /link again.
            log.warning("Zenlix refused the key of linked account %s; unlinking",
                        acting.remote_agent_id)
            if acting.remote_agent_id is not None:
                self._links.pop(acting.remote_agent_id, None)
                await self.records.forget_agent(acting.remote_agent_id)
            raise _LinkRevoked() from None

    async def _act(self, acting: Acting, mode: str, detail: TicketDetail, verb: str,
                   fields: dict[str, str] | None = None) -> None:
        """A ticket action as `acting`, falling back to the service account
        when a linked key was revoked; refusals become a clear Forbidden."""
        payload = {"ticket_hash": detail.ticket_hash or "", **(fields or {})}
        try:
            try:
                await self._call_as(acting, mode, payload)
            except _LinkRevoked:
                await self.client.call(mode, payload)
        except Forbidden:
            who = acting.name or self.client.service_name or "the service account"
            holder = ""
            if detail.lock_by:
                holder = f" (locked by {await self._reader.user_name(detail.lock_by)})"
            raise Forbidden(f"Zenlix refused to {verb} ticket #{detail.id_ticket}: {who} has "
                            f"no privileges for it{holder}", provider=PROVIDER) from None

    async def _seen_by(self, acting: Acting, detail: TicketDetail) -> TicketDetail:
        """The ticket as `acting` sees it: statuses are relative to the caller
        (lock_by_me, lock_by_other)."""
        if acting.key is None:
            return detail
        fields = {"ticket_hash": detail.ticket_hash or ""}
        try:
            answer = await self._call_as(acting, "ticket_view", fields)
        except _LinkRevoked:
            return detail
        return ticket_detail(answer)

    async def _close(self, detail: TicketDetail, acting: Acting) -> Acting | None:
        """Close = lock, then `ticket_ok`, which only the lock holder may do."""
        mine = await self._seen_by(acting, detail)
        state = normal_status(mine.status)
        if state in CLOSED_STATES:
            return None
        if state == "lock_by_other":
            await self._act(acting, "ticket_unlock", mine, "take over")
        if state != "lock_by_me":
            await self._act(acting, "ticket_lock", mine, "lock")
        await self._act(acting, "ticket_ok", mine, "close")
        return acting

    async def _reopen(self, detail: TicketDetail, acting: Acting, *, unlock: bool
                      ) -> Acting | None:
        """`ticket_no_ok` leaves the ticket locked by the caller. A reopening
        no agent asked for (the customer's) frees it again."""
        mine = await self._seen_by(acting, detail)
        state = normal_status(mine.status)
        if state == "arch":
            raise Invalid(f"ticket #{mine.id_ticket} is archived in Zenlix and cannot be "
                          f"reopened", provider=PROVIDER)
        if state != "ok":
            return None
        await self._act(acting, "ticket_no_ok", mine, "reopen")
        if unlock:
            await self._act(acting, "ticket_unlock", mine, "free")
        return acting

    async def _assign(self, detail: TicketDetail, assignee: Acting, acting: Acting
                      ) -> Acting | None:
        """Take = lock as the assignee (their own key when linked); a lock
        someone else holds is undone first, by the one asking."""
        theirs = await self._seen_by(assignee, detail)
        state = normal_status(theirs.status)
        if state in CLOSED_STATES:
            raise Invalid(f"ticket #{theirs.id_ticket} is closed in Zenlix: reopen it first",
                          provider=PROVIDER)
        if state == "lock_by_other":
            await self._act(acting, "ticket_unlock", theirs, "take over")
        if state != "lock_by_me":
            await self._act(assignee, "ticket_lock", theirs, "lock")
        return assignee

    async def _release(self, detail: TicketDetail, acting: Acting) -> Acting | None:
        mine = await self._seen_by(acting, detail)
        if normal_status(mine.status) in ("lock_by_me", "lock_by_other"):
            await self._act(acting, "ticket_unlock", mine, "release")
        return SERVICE

    async def _note_lock(self, detail: TicketDetail, holder: Acting) -> None:
        """When the service account holds the lock for someone, remember who:
        Zenlix would show the service account."""
        ticket_hash = detail.ticket_hash or ""
        if holder.key is None and holder.name and detail.lock_by:
            await self.records.save_lock_note(ticket_hash, LockNote(by=detail.lock_by,
                                                                     name=holder.name))
        else:
            await self.records.save_lock_note(ticket_hash, None)

    async def _addressed_to_department(self, unit: int) -> str:
        """`user_to_id` that keeps a referred ticket visible to the whole
        department. `refer_ticket` looks each hash up, so "0" (which
        `create_ticket` takes as "the department") is stored as NULL, and
        ordinary agents see department tickets only by `find_in_set('0',
        user_to_id)`: after such a referral only heads and chiefs would see
        it (ZENLIX 2.95, issue 14). So the ticket goes to the department's
        ordinary agents by name; heads see their departments' tickets and
        chiefs every ticket anyway."""
        staff = [user for user in await self._reader.department_staff(unit)
                 if user.user_hash and user.priv == 1 and user.is_client != 1]
        staff.sort(key=lambda user: user.status != 1)  # active accounts first
        if len(staff) > REFER_STAFF_LIMIT:
            log.warning("Zenlix department %s has %d agents; the referred ticket is addressed "
                        "to the first %d (user_to_id holds 512 characters)",
                        unit, len(staff), REFER_STAFF_LIMIT)
        return ",".join(user.user_hash or "" for user in staff[:REFER_STAFF_LIMIT]) or "0"

    async def _refer_target(self, target: str, detail: TicketDetail) -> tuple[int, str | None]:
        """A department (by id or name) or a staff member (by name or login)."""
        units = await self._reader.units()
        folded = target.casefold()
        for unit in units:
            if folded == str(unit.id) or folded == unit.name.strip().casefold():
                return unit.id, None
        staff = [user for user in await self._reader.search_users(target)
                 if user.is_client != 1 and user.user_hash]
        exact = [user for user in staff if name_key(user.fio) == name_key(target)]
        chosen = exact or staff
        if len(chosen) == 1:
            user = chosen[0]
            their_units = [int(part) for part in user.unit.split(",") if part.strip().isdigit()]
            if detail.unit_id is not None and (not their_units or detail.unit_id in their_units):
                return detail.unit_id, user.user_hash
            if their_units:
                return their_units[0], user.user_hash
            return await self._unit_for(None), user.user_hash
        partial = [unit for unit in units if folded in unit.name.casefold()]
        if len(partial) == 1:
            return partial[0].id, None
        raise NotFound(f"no Zenlix department or user matches {target!r}", provider=PROVIDER)


# -- rules ---------------------------------------------------------------------------


def _with_files(text: str, attachments: Sequence[Attachment]) -> str:
    """Zenlix's JSON API takes no files: say in the text that some were sent
    (agents see them in the Telegram topic). Not `[file:`, which the server
    treats as the end of a comment."""
    notes = [f"[attachment not transferred: {clip(file.file_name, NAME_LENGTH)}]"
             for file in attachments]
    return "\n".join(part for part in (text, *notes) if part)


def _chunks(decoration: str, body: str) -> list[_Chunk]:
    """The comments a message becomes: at most COMMENT_LIMIT characters
    each, in order, every piece decorated (and numbered when there are several)."""
    room = COMMENT_LIMIT - len(decoration)
    if len(body) <= room:
        return [_Chunk(decoration + body, len(decoration))]
    pieces = split_for_comments(body, room - _PART_MARK_ROOM)
    chunks = []
    for number, piece in enumerate(pieces, start=1):
        mark = f"{decoration}({number}/{len(pieces)}) "
        chunks.append(_Chunk(mark + piece, len(mark)))
    return chunks


def _locate(comments: list[Comment], chunks: list[_Chunk], before: int,
            author: str | None) -> list[int]:
    """Positions (1-based) of the leading chunks found, in order, among the
    comments after `before`: by text, and by author when it is known."""
    positions: list[int] = []
    wanted = [text_fingerprint(chunk.text) for chunk in chunks]
    for index in range(before, len(comments)):
        if len(positions) == len(chunks):
            break
        comment = comments[index]
        if author is not None and comment.author != author:
            continue
        if text_fingerprint(comment.text) == wanted[len(positions)]:
            positions.append(index + 1)
    return positions


def _same_text(stored: str, sent: str) -> bool:
    return " ".join(stored.split()) == " ".join(sent.split())


@register(PROVIDER)
async def create_zenlix_bridge(deps: BridgeDeps) -> ZenlixBridge:
    settings = ZenlixSettings.from_env(deps.env)
    clock = deps.extra.get("zenlix_clock")
    return ZenlixBridge(settings, deps.engine, transport=deps.transport, clock=clock)

