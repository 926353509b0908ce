"""Polling iqstore (`fetch_changes`).

iqstore offers no feed across clients: a chat is read with its own client's
session. Reads follow activity: a chat the bridge just wrote to, or that
changed in the last `hot_seconds`, is read every poll; a quiet one at
intervals growing with its quiet time (a tenth of it, at most
`idle_poll_max_seconds`). The chats to read are found in the bridge's own
registry (`seg:`/`act:` rows of BridgeState, records.py), scanned by
`updated_at`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from bridges.base import (
    AuthorKind,
    ChangeEvent,
    Changes,
    MessageAdded,
    RemoteMessage,
    TicketChanged,
)
from bridges.errors import BridgeError, Invalid
from bridges.iqstore.client import PROVIDER, IqstoreClient
from bridges.iqstore.config import IqstoreSettings
from bridges.iqstore.cursor import ChatMark, IqstoreCursor
from bridges.iqstore.mapping import (
    is_ours,
    is_visible,
    message_from_chat,
    ms_time,
    parse_segment_id,
    segment_id,
)
from bridges.iqstore.models import ChatMessage, ChatPage, Rels
from bridges.iqstore.records import Conversation, activity_of
from bridges.iqstore.sessions import ClientSessions
from bridges.state import BridgeState, BridgeStateRow

log = logging.getLogger("deskbridge.bridges.iqstore")

# Registry rows written up to this long before the newest one seen may still
# be committing (clocks of several processes, slow transactions): re-read them.
REGISTRY_MARGIN_MS = 120_000
# A chat whose read failed is tried again after this long.
READ_RETRY_MS = 60_000


@dataclass(frozen=True, slots=True)
class _RegistryRow:
    key: str
    value: str
    updated_ms: int


@dataclass(slots=True)
class _Discovered:
    conversation: Conversation
    replay_opening: bool  # its opening message was already passed over


@dataclass(slots=True)
class _Read:
    client_id: int
    page: ChatPage | None = None
    error: BridgeError | None = None
    ticket_ids: dict[str, int] = field(default_factory=dict)


class Poller:
    def __init__(self, client: IqstoreClient, state: BridgeState, settings: IqstoreSettings,
                 chat_sessions: ClientSessions, engine: AsyncEngine, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._state = state
        self._settings = settings
        self._chat_sessions = chat_sessions
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._clock = clock

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

    async def _start(self, now: int) -> IqstoreCursor:
        """Start from now: every known chat, with nothing to report."""
        rows = await self._registry(since_ms=None)
        start = IqstoreCursor(watermark=max([0, *(row.updated_ms for row in rows)]))
        for row in rows:
            kind, client_id, opening = _registry_key(row.key)
            mark = start.chats.setdefault(client_id, ChatMark(0, 0, 0))
            if kind == "seg":
                conversation = Conversation.from_row(client_id, opening, row.value)
                mark.add_conversation(opening)
                mark.last_seen = max(mark.last_seen, opening)
                mark.last_activity = max(mark.last_activity, conversation.created_ms)
            else:
                last, at = activity_of(row.value)
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
        await self._chat_sessions.preload(clients)
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
            page = await self._chat_sessions.as_client(
                client_id, self._client.history, max_id=max_id, limit=limit)
            rels.append(page.rels)
            fresh = [message for message in page.messages if message.id > after]
            found.update((message.id, message) for message in fresh)
            if page.entries < limit or not page.messages or len(fresh) < len(page.messages):
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

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


# -- rules ---------------------------------------------------------------------------


def _apply_registry(cursor: IqstoreCursor, rows: list[_RegistryRow]) -> list[_Discovered]:
    """New conversations become due chats; our own sends make a chat due."""
    discovered = []
    for row in rows:
        kind, client_id, opening = _registry_key(row.key)
        mark = cursor.chats.get(client_id)
        if kind == "seg":
            conversation = Conversation.from_row(client_id, opening, row.value)
            if mark is None:
                mark = cursor.chats[client_id] = ChatMark(
                    last_seen=opening - 1, next_read=0, last_activity=conversation.created_ms)
            if not mark.add_conversation(opening):
                continue  # re-read within the margin: known already
            discovered.append(_Discovered(conversation, replay_opening=opening <= mark.last_seen))
            mark.next_read = 0
        elif mark is not None:
            last, at = activity_of(row.value)
            if last > mark.last_seen:  # the bridge wrote since the last read
                mark.next_read = 0
                mark.last_activity = max(mark.last_activity, at)
    return discovered


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


def _ms(moment: datetime) -> int:
    if moment.tzinfo is None:  # SQLite hands timestamps back naive; they are UTC
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
