"""iqstore: Telegram customers talk in iqstore's support chat, each as an
iqstore client of their own (providers/iqstore.md).

Customer side (the public chat API): a client session per Telegram customer,
messages sent with a stable `LocalId` (derived from the bot's idempotency
key, so a retried send is recognised, and so is the bridge's own message
when the chat shows it again), files uploaded first and sent by `FileId`.
Agent side (the internal API, optional): replies typed in Telegram go to the
iqstore ticket of the conversation through a service account, when that
ticket is known.

A "ticket" here is a conversation: the part of a client's chat that starts
with the message opening it (see `mapping`). The chat API has no status, so
conversations never close, and no list across clients, so the poll reads
every chat on its own, often while it is busy and rarely when it is quiet
(see `fetch_changes`).

`BridgeState` keys:
- `customer:<customer_ref>` → the customer's iqstore client id;
- `client:<client id>` → its session token (secret) and customer;
- `seg:<client id>:<opening id>` → a conversation: customer, subject, the
  key that opened it; `act:<client id>` → the last message the bridge sent.
  Both are the registry the poll scans for chats to read (by `updated_at`);
- `local:<LocalId>` → the idempotency key behind our LocalIds;
- `key:<idempotency key>` → how far a send got;
- `tid:<conversation>` → the iqstore ticket of a conversation, when learned.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

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
    MessageAdded,
    NewTicket,
    RemoteMessage,
    RemoteTicket,
    TicketChanged,
    TicketStatus,
)
from bridges.content import checked_files, subject_of
from bridges.errors import AuthFailed, BridgeError, Invalid, NotFound, Unavailable
from bridges.iqstore.client import PROVIDER, IqstoreClient
from bridges.iqstore.config import IqstoreSettings
from bridges.iqstore.cursor import ChatMark, IqstoreCursor
from bridges.iqstore.mapping import (
    is_ours,
    is_visible,
    local_id_for,
    message_from_chat,
    ms_time,
    parse_segment_id,
    segment_id,
)
from bridges.iqstore.models import ChatMessage, ChatPage, Rels
from bridges.registry import BridgeDeps, register
from bridges.state import BridgeState, BridgeStateRow

log = logging.getLogger("deskbridge.bridges.iqstore")
T = TypeVar("T")

CUSTOMER_SIDE: Capabilities = frozenset(
    {Capability.CREATE, Capability.REPLY_AS_CUSTOMER, Capability.ATTACHMENTS}
)
# Registry rows written up to this long before the newest one seen may still
# be committing (clocks of several processes, slow transactions): re-read them.
REGISTRY_MARGIN_MS = 120_000
# A chat whose read failed is tried again after this long.
READ_RETRY_MS = 60_000


@dataclass(frozen=True, slots=True)
class _Progress:
    """How far a send with an idempotency key got (`key:<key>`)."""

    ids: tuple[int | None, ...] = ()
    pending: bool = False
    conversation: str | None = None
    ticket_message: int | None = None

    def to_json(self) -> str:
        return json.dumps({"ids": list(self.ids), "pending": self.pending,
                           "conversation": self.conversation, "tm": self.ticket_message})

    @classmethod
    def from_json(cls, text: str | None) -> _Progress:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(tuple(data.get("ids") or ()), bool(data.get("pending")),
                   data.get("conversation"), data.get("tm"))


@dataclass(frozen=True, slots=True)
class _Conversation:
    client_id: int
    opening_id: int
    customer_ref: str | None
    subject: str
    text: str
    create_key: str | None
    created_ms: int

    @property
    def remote_ticket_id(self) -> str:
        return segment_id(self.client_id, self.opening_id)

    def to_json(self) -> str:
        return json.dumps({"customer": self.customer_ref, "subject": self.subject,
                           "text": self.text, "key": self.create_key, "at": self.created_ms},
                          ensure_ascii=False)

    @classmethod
    def from_row(cls, client_id: int, opening_id: int, value: str) -> _Conversation:
        data = json.loads(value)
        return cls(client_id, opening_id, data.get("customer"), data.get("subject") or "",
                   data.get("text") or "", data.get("key"), int(data.get("at") or 0))

    def ticket(self) -> RemoteTicket:
        created = ms_time(self.created_ms)
        return RemoteTicket(
            remote_ticket_id=self.remote_ticket_id,
            number=str(self.opening_id),
            subject=self.subject,
            # The chat API has no status: a conversation stays open.
            status=TicketStatus.OPEN,
            remote_customer_id=str(self.client_id),
            customer_ref=self.customer_ref,
            created_at=created,
            updated_at=created,
        )


@dataclass(frozen=True, slots=True)
class _RegistryRow:
    key: str
    value: str
    updated_ms: int


@dataclass(slots=True)
class _Discovered:
    conversation: _Conversation
    replay_opening: bool  # its opening message was already passed over


@dataclass(slots=True)
class _Read:
    client_id: int
    page: ChatPage | None = None
    error: BridgeError | None = None
    ticket_ids: dict[str, int] = field(default_factory=dict)


class IqstoreBridge(BridgeBase):
    name = PROVIDER
    # Files are uploaded (`/files/upload`): the bytes are needed.
    uploads_files: bool = True

    def __init__(
        self,
        client: IqstoreClient,
        state: BridgeState,
        settings: IqstoreSettings,
        engine: AsyncEngine,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._state = state
        self._settings = settings
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._clock = clock
        self._tokens: dict[int, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.capabilities: Capabilities = CUSTOMER_SIDE | (
            {Capability.REPLY_AS_AGENT} if settings.agent_side else set())

    # -- contract ---------------------------------------------------------------

    async def check(self) -> CheckReport:
        try:
            await self._client.me(None)
        except AuthFailed:
            pass  # the answer expected without a session: iqstore is there
        except BridgeError as exc:
            return CheckReport(ok=False, lines=[f"iqstore: {type(exc).__name__}: {exc}"])
        how = ("integration_auth" if self._settings.integration_credentials is not None
               else "anonymous signup")
        lines = [
            f"iqstore: public API at {self._settings.public_api_url} answers; "
            f"channel {self._settings.channel!r}; customers become clients by {how}",
        ]
        if self._settings.agent_side:
            lines.append("iqstore: agent replies go to iqstore tickets through the service "
                         "account (its token cannot be checked without writing)")
        else:
            lines.append("iqstore: agent side not configured: agent replies are off")
        return CheckReport(ok=True, lines=lines)

    async def create_ticket(self, ticket: NewTicket) -> RemoteTicket:
        files = checked_files(ticket.text, ticket.attachments, provider=PROVIDER,
                              needs_bytes=True)
        key = ticket.idempotency_key
        progress = await self._progress(key)
        if progress.conversation is not None:
            return await self.get_ticket(progress.conversation)
        client_id = await self._client_of(ticket.customer)
        ids = await self._send(client_id, key, ticket.text, files, progress)
        conversation = _Conversation(
            client_id, ids[0], ticket.customer.customer_ref,
            subject_of(ticket.subject, ticket.text), ticket.text, key, self._now_ms())
        await self._state.set_many({
            f"seg:{conversation.remote_ticket_id}": conversation.to_json(),
            f"act:{client_id}": _activity(max(ids), conversation.created_ms),
            **({f"key:{key}": _Progress(tuple(ids), conversation=conversation.remote_ticket_id)
                .to_json()} if key else {}),
        })
        return conversation.ticket()

    async def get_ticket(self, remote_ticket_id: str) -> RemoteTicket:
        return (await self._conversation(remote_ticket_id)).ticket()

    async def post_customer_message(
        self,
        remote_ticket_id: str,
        customer: CustomerIdentity,
        text: str,
        attachments: Sequence[Attachment] = (),
        idempotency_key: str | None = None,
    ) -> RemoteMessage:
        files = checked_files(text, attachments, provider=PROVIDER, needs_bytes=True)
        conversation = await self._conversation(remote_ticket_id)
        if conversation.customer_ref != customer.customer_ref:
            raise Invalid(f"conversation {remote_ticket_id} is another customer's",
                          provider=PROVIDER)
        key = idempotency_key
        ids = await self._send(conversation.client_id, key, text, files, await self._progress(key))
        await self._state.set_many({
            f"act:{conversation.client_id}": _activity(max(ids), self._now_ms()),
            **({f"key:{key}": _Progress(tuple(ids)).to_json()} if key else {}),
        })
        return RemoteMessage(
            remote_message_id=str(ids[0]),
            remote_ticket_id=conversation.remote_ticket_id,
            author_kind=AuthorKind.CUSTOMER,
            text=text,
            author_name=customer.full_name,
            attachments=tuple(files),
            origin_key=key,
        )

    async def post_agent_reply(
        self,
        remote_ticket_id: str,
        agent: AgentIdentity,
        text: str,
        attachments: Sequence[Attachment] = (),
        idempotency_key: str | None = None,
    ) -> RemoteMessage:
        if not self._settings.agent_side:
            raise Invalid("the iqstore agent side is not configured", provider=PROVIDER)
        if attachments:
            raise Invalid("iqstore's agent API takes text only", provider=PROVIDER)
        if not text.strip():
            raise Invalid("a reply needs text", provider=PROVIDER)
        conversation = await self._conversation(remote_ticket_id)
        ticket_id = await self._state.get(f"tid:{conversation.remote_ticket_id}")
        if ticket_id is None:
            # Only the chat links a conversation to an iqstore ticket (README).
            raise Invalid(f"no iqstore ticket is known for conversation {remote_ticket_id} "
                          "yet: it is learned when iqstore answers from a ticket",
                          provider=PROVIDER)
        key = idempotency_key
        local_id = local_id_for(key, 0)
        progress = await self._progress(key)
        remote_id = f"t{progress.ticket_message}" if progress.ticket_message else None
        if remote_id is None and progress.pending:
            remote_id = await self._find_mirrored(conversation.client_id, local_id)
        if remote_id is None:
            if key is not None:
                await self._state.set_many({f"local:{local_id}": key,
                                            f"key:{key}": _Progress(pending=True).to_json()})
            written = await self._client.create_message(
                int(ticket_id), local_id=local_id, text=f"{agent.full_name}: {text}")
            remote_id = f"t{written.id}"
            if key is not None:
                await self._state.set(f"key:{key}",
                                      _Progress(ticket_message=written.id).to_json())
        return RemoteMessage(
            remote_message_id=remote_id,
            remote_ticket_id=conversation.remote_ticket_id,
            author_kind=AuthorKind.AGENT,
            text=text,
            author_name=agent.full_name,
            origin_key=key,
        )

    async def fetch_changes(self, cursor: str | None) -> Changes:
        """Reads the chats that are due, within the budget.

        iqstore offers no feed across clients: a chat is read with its own
        client's session. Reads therefore follow activity: a chat the bridge
        just wrote to, or that changed in the last `hot_seconds`, is read
        every poll; a quiet one at intervals growing with its quiet time (a
        tenth of it, at most `idle_poll_max_seconds`). A poll costs the busy
        chats plus a trickle of quiet ones, one request each (more for a chat
        with over a page of new messages).
        """
        now = self._now_ms()
        if cursor is None:
            return Changes(events=(), cursor=(await self._start(now)).dump())
        following = _parse_cursor(cursor).copy()
        rows = await self._registry(since_ms=following.watermark - REGISTRY_MARGIN_MS)
        following.watermark = max([following.watermark, *(row.updated_ms for row in rows)])
        discovered = _apply_registry(following, rows)
        due = sorted((client for client, mark in following.chats.items() if mark.next_read <= now),
                     key=lambda client: (following.chats[client].next_read, client))
        budget = self._settings.poll_budget
        reads = await self._read_chats(due[:budget], following)
        failed = [read.error for read in reads if read.error is not None]
        if reads and len(failed) == len(reads):
            raise failed[0]
        events = await self._events(discovered, reads, following, now)
        return Changes(events=events, cursor=following.dump(), more=len(due) > budget)

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- sessions ---------------------------------------------------------------------

    async def _client_of(self, customer: CustomerIdentity) -> int:
        """The customer's iqstore client, signed up (or in) on first use."""
        ref = customer.customer_ref
        if found := await self._state.get(f"customer:{ref}"):
            return int(found)
        async with self._lock(f"customer:{ref}"):
            if found := await self._state.get(f"customer:{ref}"):
                return int(found)
            credentials = self._settings.credentials_for(ref)
            if credentials is not None:
                auth = await self._client.integration_auth(credentials)
            else:
                auth = await self._client.signup(_display_name(customer))
            client_id = auth.client.id
            await self._state.set_many({
                f"client:{client_id}": json.dumps({"token": auth.session.token,
                                                   "customer": ref}),
                f"customer:{ref}": str(client_id),
            })
            self._tokens[client_id] = auth.session.token
            log.info("iqstore client %s opened for customer %s", client_id, ref)
            return client_id

    async def _as_client(self, client_id: int, call: Callable[..., Awaitable[T]],
                         **kwargs: Any) -> T:
        """`call(token, **kwargs)` with the client's session, renewed once if refused."""
        token = await self._token(client_id)
        try:
            return await call(token, **kwargs)
        except AuthFailed:
            token = await self._renew(client_id, token)
            return await call(token, **kwargs)

    async def _token(self, client_id: int) -> str:
        if client_id not in self._tokens:
            record = _client_record(await self._state.get(f"client:{client_id}"))
            if record.get("token") is None:
                raise AuthFailed(f"no session for iqstore client {client_id}",
                                 provider=PROVIDER)
            self._tokens[client_id] = record["token"]
        return self._tokens[client_id]

    async def _renew(self, client_id: int, refused: str) -> str:
        async with self._lock(f"client:{client_id}"):
            if (cached := self._tokens.get(client_id)) and cached != refused:
                return cached  # renewed meanwhile
            record = _client_record(await self._state.get(f"client:{client_id}"))
            if record.get("token") and record["token"] != refused:
                self._tokens[client_id] = record["token"]  # by another process
                return str(record["token"])
            credentials = (self._settings.credentials_for(record["customer"])
                           if record.get("customer") else None)
            log.info("iqstore session of client %s expired; signing in again", client_id)
            auth = await (self._client.integration_auth(credentials) if credentials
                          else self._client.auth(refused))
            if auth.client.id != client_id:
                raise AuthFailed(f"iqstore renewed the session of client {client_id} as "
                                 f"client {auth.client.id}", provider=PROVIDER)
            await self._state.set(f"client:{client_id}", json.dumps(
                {**record, "token": auth.session.token}))
            self._tokens[client_id] = auth.session.token
            return auth.session.token

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    # -- sending ------------------------------------------------------------------------

    async def _send(self, client_id: int, key: str | None, text: str,
                    files: list[Attachment], progress: _Progress) -> list[int]:
        """Send a message as its parts (the text, or one part per file with
        the text on the first); returns their chat message ids. A part whose
        LocalId the chat already shows is not sent again."""
        parts = _parts(text, files)
        local_ids = [local_id_for(key, index) for index in range(len(parts))]
        ids = list(progress.ids[: len(parts)]) + [None] * (len(parts) - len(progress.ids))
        if progress.pending and None in ids:
            await self._recover(client_id, local_ids, ids)
        if key is not None and None in ids:
            await self._state.set_many({
                **{f"local:{local_id}": key for local_id in local_ids},
                f"key:{key}": _Progress(tuple(ids), pending=True).to_json(),
            })
        for index, (part_text, file) in enumerate(parts):
            if ids[index] is not None:
                continue
            file_id = None
            if file is not None:
                assert file.data is not None
                uploaded = await self._as_client(client_id, self._client.upload,
                                                 file_name=file.file_name, data=file.data,
                                                 mime_type=file.mime_type,
                                                 image=_is_image(file))
                file_id = uploaded.id
            page = await self._as_client(client_id, self._client.send,
                                         local_id=local_ids[index], text=part_text,
                                         file_id=file_id)
            sent = _with_local_id(page.messages, local_ids[index])
            ids[index] = sent.id if sent else await self._find_sent(client_id, local_ids[index])
            if key is not None:
                await self._state.set(f"key:{key}",
                                      _Progress(tuple(ids), pending=True).to_json())
        return [message_id for message_id in ids if message_id is not None]

    async def _recover(self, client_id: int, local_ids: list[int],
                       ids: list[int | None]) -> None:
        """An earlier attempt may have sent parts without learning their ids."""
        page = await self._as_client(client_id, self._client.history, max_id=None,
                                     limit=self._settings.history_page)
        for index, local_id in enumerate(local_ids):
            if ids[index] is None and (found := _with_local_id(page.messages, local_id)):
                ids[index] = found.id

    async def _find_sent(self, client_id: int, local_id: int) -> int:
        page = await self._as_client(client_id, self._client.history, max_id=None,
                                     limit=self._settings.history_page)
        found = _with_local_id(page.messages, local_id)
        if found is None:
            raise Unavailable("iqstore accepted a message but does not show it yet",
                              provider=PROVIDER)
        return found.id

    async def _find_mirrored(self, client_id: int, local_id: int) -> str | None:
        page = await self._as_client(client_id, self._client.history, max_id=None,
                                     limit=self._settings.history_page)
        # The reply shows in the client's chat as an agent's message (README).
        found = _with_local_id(page.messages, local_id, author="user")
        return str(found.id) if found else None

    # -- polling ------------------------------------------------------------------------

    async def _start(self, now: int) -> IqstoreCursor:
        """Start from now: every known chat, with nothing to report."""
        rows = await self._registry(since_ms=None)
        start = IqstoreCursor(watermark=max([0, *(row.updated_ms for row in rows)]))
        for row in rows:
            kind, client_id, opening = _registry_key(row.key)
            mark = start.chats.setdefault(client_id, ChatMark(0, 0, 0))
            if kind == "seg":
                conversation = _Conversation.from_row(client_id, opening, row.value)
                mark.add_conversation(opening)
                mark.last_seen = max(mark.last_seen, opening)
                mark.last_activity = max(mark.last_activity, conversation.created_ms)
            else:
                last, at = _activity_of(row.value)
                mark.last_seen = max(mark.last_seen, last)
                mark.last_activity = max(mark.last_activity, at)
        for client_id, mark in start.chats.items():
            # Spread the first reads of quiet chats over their interval.
            delay = self._read_delay(now, mark.last_activity)
            if delay > self._settings.min_read_seconds * 1000:
                mark.next_read = now + delay * ((client_id * 2654435761) % 1000) // 1000
            else:
                mark.next_read = now  # busy: read at the first poll
        return start

    async def _registry(self, *, since_ms: int | None) -> list[_RegistryRow]:
        """Conversations and activity the bridge recorded, oldest first."""
        statement = select(BridgeStateRow.key, BridgeStateRow.value,
                           BridgeStateRow.updated_at).where(
            BridgeStateRow.provider == PROVIDER,
            or_(BridgeStateRow.key.startswith("seg:", autoescape=True),
                BridgeStateRow.key.startswith("act:", autoescape=True)))
        if since_ms is not None:
            statement = statement.where(
                BridgeStateRow.updated_at > datetime.fromtimestamp(since_ms / 1000, UTC))
        async with self._sessions() as session:
            rows = await session.execute(statement.order_by(BridgeStateRow.updated_at))
            return [_RegistryRow(key, value, _ms(updated)) for key, value, updated in rows]

    async def _read_chats(self, clients: list[int], following: IqstoreCursor) -> list[_Read]:
        missing = [client for client in clients if client not in self._tokens]
        for name, value in (await self._state.get_many(f"client:{c}" for c in missing)).items():
            token = _client_record(value).get("token")
            if token:
                self._tokens[int(name.removeprefix("client:"))] = token
        limit = asyncio.Semaphore(self._settings.read_concurrency)

        async def read(client_id: int) -> _Read:
            async with limit:
                try:
                    page = await self._unread(client_id, following.chats[client_id].last_seen)
                except BridgeError as exc:
                    log.warning("reading the iqstore chat of client %s failed: %s",
                                client_id, exc)
                    return _Read(client_id, error=exc)
                return _Read(client_id, page=page)

        return list(await asyncio.gather(*(read(client) for client in clients)))

    async def _unread(self, client_id: int, after: int) -> ChatPage:
        """The chat's messages after `after`, paging back from the newest."""
        found: dict[int, ChatMessage] = {}
        rels: list[Rels] = []
        max_id: int | None = None
        limit = self._settings.history_page
        while True:
            page = await self._as_client(client_id, self._client.history, max_id=max_id,
                                         limit=limit)
            rels.append(page.rels)
            fresh = [message for message in page.messages if message.id > after]
            found.update((message.id, message) for message in fresh)
            if len(page.messages) < limit or len(fresh) < len(page.messages):
                break  # reached what was seen before, or the start of the chat
            max_id = page.messages[0].id
        return ChatPage(messages=sorted(found.values(), key=lambda m: m.id),
                        rels=_merged(rels))

    async def _events(self, discovered: list[_Discovered], reads: list[_Read],
                      following: IqstoreCursor, now: int) -> list[ChangeEvent]:
        events: list[ChangeEvent] = []
        for item in discovered:
            conversation = item.conversation
            events.append(TicketChanged(conversation.ticket(), origin_key=conversation.create_key))
            if item.replay_opening:
                # The chat was read past the opening message before the
                # conversation was known: report the opening from the registry.
                events.append(MessageAdded(RemoteMessage(
                    remote_message_id=str(conversation.opening_id),
                    remote_ticket_id=conversation.remote_ticket_id,
                    author_kind=AuthorKind.CUSTOMER, text=conversation.text,
                    created_at=ms_time(conversation.created_ms),
                    origin_key=conversation.create_key)))
        ours = await self._state.get_many(
            f"local:{message.local_id}" for read in reads if read.page
            for message in read.page.messages if is_ours(message.local_id))
        messages: list[tuple[int, int, MessageAdded]] = []
        learned: dict[str, str] = {}
        for read in reads:
            mark = following.chats[read.client_id]
            if read.page is None:
                mark.next_read = now + READ_RETRY_MS
                continue
            for message in read.page.messages:
                mark.last_seen = max(mark.last_seen, message.id)
                mark.last_activity = max(mark.last_activity, message.created_at)
                opening = mark.conversation_of(message.id)
                if opening is None or not is_visible(message):
                    continue
                conversation_id = segment_id(read.client_id, opening)
                key = ours.get(f"local:{message.local_id}") if is_ours(message.local_id) else None
                messages.append((message.created_at, message.id, MessageAdded(
                    message_from_chat(message, conversation_id, read.page.rels, origin_key=key))))
                if ticket_id := _ticket_of(message, read.page.rels):
                    learned[f"tid:{conversation_id}"] = str(ticket_id)
            mark.next_read = now + self._read_delay(now, mark.last_activity)
        if learned:
            await self._state.set_many(learned)  # a cache: the cursor needs none of it
        events.extend(added for _, _, added in sorted(messages, key=lambda m: (m[0], m[1])))
        return events

    def _read_delay(self, now: int, last_activity: int) -> int:
        """How long a chat waits for its next read: not at all while busy, a
        tenth of its quiet time once quiet, never longer than the maximum."""
        settings = self._settings
        quiet = max(0, now - last_activity)
        delay = 0.0 if quiet < settings.hot_seconds * 1000 else quiet / 10
        return int(max(settings.min_read_seconds * 1000,
                       min(delay, settings.idle_poll_max_seconds * 1000)))

    # -- helpers ------------------------------------------------------------------------

    async def _conversation(self, remote_ticket_id: str) -> _Conversation:
        client_id, opening = parse_segment_id(remote_ticket_id)
        value = await self._state.get(f"seg:{segment_id(client_id, opening)}")
        if value is None:
            raise NotFound(f"no iqstore conversation {remote_ticket_id!r}", provider=PROVIDER)
        return _Conversation.from_row(client_id, opening, value)

    async def _progress(self, key: str | None) -> _Progress:
        if key is None:
            return _Progress()
        return _Progress.from_json(await self._state.get(f"key:{key}"))

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


@register(PROVIDER)
async def create_iqstore_bridge(deps: BridgeDeps) -> IqstoreBridge:
    settings = IqstoreSettings.from_env(deps.env)
    client = IqstoreClient(settings, transport=deps.transport)
    return IqstoreBridge(client, BridgeState(deps.engine, PROVIDER), settings, deps.engine)


# -- rules ---------------------------------------------------------------------------


def _apply_registry(cursor: IqstoreCursor, rows: list[_RegistryRow]) -> list[_Discovered]:
    """New conversations become due chats; our own sends make a chat due."""
    discovered = []
    for row in rows:
        kind, client_id, opening = _registry_key(row.key)
        mark = cursor.chats.get(client_id)
        if kind == "seg":
            conversation = _Conversation.from_row(client_id, opening, row.value)
            if mark is None:
                mark = cursor.chats[client_id] = ChatMark(
                    last_seen=opening - 1, next_read=0, last_activity=conversation.created_ms)
            if not mark.add_conversation(opening):
                continue  # re-read within the margin: known already
            discovered.append(_Discovered(conversation, replay_opening=opening <= mark.last_seen))
            mark.next_read = 0
        elif mark is not None:
            last, at = _activity_of(row.value)
            if last > mark.last_seen:  # the bridge wrote since the last read
                mark.next_read = 0
                mark.last_activity = max(mark.last_activity, at)
    return discovered


def _activity(last_message_id: int, at_ms: int) -> str:
    return json.dumps({"last": last_message_id, "at": at_ms})


def _activity_of(value: str) -> tuple[int, int]:
    data = json.loads(value)
    return int(data["last"]), int(data.get("at") or 0)


def _registry_key(key: str) -> tuple[str, int, int]:
    kind, _, rest = key.partition(":")
    if kind == "seg":
        client_id, opening = parse_segment_id(rest)
        return kind, client_id, opening
    return kind, int(rest), 0


def _parse_cursor(cursor: str) -> IqstoreCursor:
    try:
        return IqstoreCursor.parse(cursor)
    except (ValueError, TypeError):
        raise Invalid(f"not an iqstore cursor: {cursor[:40]!r}", provider=PROVIDER) from None


def _ticket_of(message: ChatMessage, rels: Rels) -> int | None:
    if message.ticket_message_id is None:
        return None
    link = next((t for t in rels.ticket_messages if t.id == message.ticket_message_id), None)
    return link.ticket_id if link else None


def _merged(graphs: list[Rels]) -> Rels:
    return Rels(
        clients=[item for graph in graphs for item in graph.clients],
        users=[item for graph in graphs for item in graph.users],
        files=[item for graph in graphs for item in graph.files],
        ticket_messages=[item for graph in graphs for item in graph.ticket_messages],
    )


def _with_local_id(messages: list[ChatMessage], local_id: int,
                   author: str = "client") -> ChatMessage | None:
    return next((m for m in messages if m.local_id == local_id and m.author == author), None)


def _is_image(file: Attachment) -> bool:
    return file.kind == "photo" or bool(file.mime_type and file.mime_type.startswith("image/"))


def _parts(text: str, files: list[Attachment]) -> list[tuple[str, Attachment | None]]:
    if not files:
        return [(text, None)]
    return [(text if index == 0 else "", file) for index, file in enumerate(files)]


def _display_name(customer: CustomerIdentity) -> str:
    name = customer.full_name.strip() or f"Telegram {customer.customer_ref}"
    return f"{name} (@{customer.username})" if customer.username else name


def _client_record(value: str | None) -> dict[str, Any]:
    return json.loads(value) if value else {}


def _ms(moment: datetime) -> int:
    if moment.tzinfo is None:  # SQLite hands timestamps back naive; they are UTC
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
