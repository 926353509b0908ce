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
(`poll.py`). Sessions per customer: `sessions.py`; what the bridge keeps in
`BridgeState`: `records.py`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

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
    NewTicket,
    RemoteMessage,
    RemoteTicket,
)
from bridges.content import checked_files, subject_of
from bridges.errors import AuthFailed, BridgeError, Invalid, NotFound, Unavailable
from bridges.iqstore.client import PROVIDER, IqstoreClient
from bridges.iqstore.config import IqstoreSettings
from bridges.iqstore.mapping import (
    local_id_for,
    parse_segment_id,
    segment_id,
)
from bridges.iqstore.models import ChatMessage
from bridges.iqstore.poll import Poller
from bridges.iqstore.records import Conversation, activity
from bridges.iqstore.sessions import ClientSessions
from bridges.registry import BridgeDeps, register
from bridges.state import BridgeState

log = logging.getLogger("deskbridge.bridges.iqstore")
T = TypeVar("T")

CUSTOMER_SIDE: Capabilities = frozenset(
    {Capability.CREATE, Capability.REPLY_AS_CUSTOMER, Capability.ATTACHMENTS}
)


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
        self._chat_sessions = ClientSessions(client, state, settings)
        self._poller = Poller(client, state, settings, self._chat_sessions, engine, clock=clock)
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
        client_id = await self._chat_sessions.client_of(ticket.customer)
        ids = await self._send(client_id, key, ticket.text, files, progress)
        conversation = Conversation(
            client_id, ids[0], ticket.customer.customer_ref,
            subject_of(ticket.subject, ticket.text), ticket.text, key, self._now_ms())
        await self._state.set_many({
            f"seg:{conversation.remote_ticket_id}": conversation.to_json(),
            f"act:{client_id}": activity(max(ids), conversation.created_ms),
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
            f"act:{conversation.client_id}": activity(max(ids), self._now_ms()),
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
        return await self._poller.fetch_changes(cursor)

    async def aclose(self) -> None:
        await self._client.aclose()

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
                uploaded = await self._chat_sessions.as_client(client_id, self._client.upload,
                                                 file_name=file.file_name, data=file.data,
                                                 mime_type=file.mime_type,
                                                 image=_is_image(file))
                file_id = uploaded.id
            page = await self._chat_sessions.as_client(client_id, self._client.send,
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
        page = await self._chat_sessions.as_client(client_id, self._client.history, max_id=None,
                                     limit=self._settings.history_page)
        for index, local_id in enumerate(local_ids):
            if ids[index] is None and (found := _with_local_id(page.messages, local_id)):
                ids[index] = found.id

    async def _find_sent(self, client_id: int, local_id: int) -> int:
        page = await self._chat_sessions.as_client(client_id, self._client.history, max_id=None,
                                     limit=self._settings.history_page)
        found = _with_local_id(page.messages, local_id)
        if found is None:
            raise Unavailable("iqstore accepted a message but does not show it yet",
                              provider=PROVIDER)
        return found.id

    async def _find_mirrored(self, client_id: int, local_id: int) -> str | None:
        page = await self._chat_sessions.as_client(client_id, self._client.history, max_id=None,
                                     limit=self._settings.history_page)
        # The reply shows in the client's chat as an agent's message (README).
        found = _with_local_id(page.messages, local_id, author="user")
        return str(found.id) if found else None

    # -- helpers ------------------------------------------------------------------------

    async def _conversation(self, remote_ticket_id: str) -> Conversation:
        client_id, opening = parse_segment_id(remote_ticket_id)
        value = await self._state.get(f"seg:{segment_id(client_id, opening)}")
        if value is None:
            raise NotFound(f"no iqstore conversation {remote_ticket_id!r}", provider=PROVIDER)
        return Conversation.from_row(client_id, opening, value)

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


def _with_local_id(messages: list[ChatMessage], local_id: int,
                   author: str = "client") -> ChatMessage | None:
    return next((m for m in messages if m.local_id == local_id and m.author == author), None)


def _is_image(file: Attachment) -> bool:
    return file.kind == "photo" or bool(file.mime_type and file.mime_type.startswith("image/"))


def _parts(text: str, files: list[Attachment]) -> list[tuple[str, Attachment | None]]:
    if not files:
        return [(text, None)]
    return [(text if index == 0 else "", file) for index, file in enumerate(files)]
