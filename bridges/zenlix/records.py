"""What the Zenlix bridge remembers beyond the poll cursor, in
`bridges.state.BridgeState` (one key-value table, provider "zenlix").

Zenlix has no place for the bot's idempotency keys, no comment ids and no
"on behalf of": the bridge keeps, per ticket it created, who the customer is;
per comment it posted, which message it belongs to; per linked agent, the
API key their sign-in returned (never the password).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from pydantic import SecretStr

from bridges.state import BridgeState

log = logging.getLogger("deskbridge.zenlix")

T = TypeVar("T")

_KEY_ROOM = 200  # BridgeState keys are 255 characters; ours carry a prefix


@dataclass(frozen=True, slots=True)
class TicketRecord:
    """A ticket this bridge created."""

    id_ticket: int
    customer_ref: str | None
    client: str  # the Zenlix client hash
    subject: str
    # Characters of the ticket text before the customer's own words (a
    # subject line, a "from Telegram" header): cut off when read back.
    strip: int = 0
    key: str | None = None  # idempotency key of the creation


@dataclass(frozen=True, slots=True)
class OwnComment:
    """A comment this bridge posted. A long message is several comments; all
    point at the `first`, whose position is the message's id."""

    first: int
    kind: str  # AuthorKind value
    strip: int  # characters of decoration ("Anna: ", "(2/3) ") before the text
    key: str | None = None


@dataclass(frozen=True, slots=True)
class AgentLink:
    """A linked Zenlix account: the API key its sign-in returned."""

    login: str
    api_key: SecretStr = field(repr=False)
    fio: str
    user_hash: str | None = None


@dataclass(frozen=True, slots=True)
class Pending:
    """A creation or post under way: written before the call, so a retry
    after a crash finds what the first attempt stored instead of repeating."""

    at: float  # wall-clock time the attempt started
    ticket_hash: str | None = None
    comments_before: int = 0  # comments the ticket had before a post
    client: str | None = None
    # Fingerprints of the comments a post is adding (text_fingerprint), and
    # their author when known: the poller never delivers those as someone
    # else's, even if the post is abandoned half-way.
    chunks: list[str] = field(default_factory=list)
    author: str | None = None


@dataclass(frozen=True, slots=True)
class Done:
    """A creation or post that completed: the id it produced."""

    remote_id: str
    created_at: str = ""


@dataclass(frozen=True, slots=True)
class LockNote:
    """The service account holds a ticket's lock on behalf of `name`."""

    by: str | None
    name: str


@dataclass(frozen=True, slots=True)
class OriginNote:
    """The idempotency key of the bot's last change to a ticket, and the
    ticket's state right after it: echoed when the poll sees that state."""

    key: str
    signature: str
    at: float = 0.0  # wall-clock time of the change


class ZenlixRecords:
    def __init__(self, state: BridgeState) -> None:
        self._state = state

    # -- tickets -------------------------------------------------------------

    async def tickets(self, hashes: Iterable[str]) -> dict[str, TicketRecord]:
        found = await self._many("ticket", hashes)
        return {h: record for h, raw in found.items()
                if (record := _build(TicketRecord, raw)) is not None}

    async def save_tickets(self, records: dict[str, TicketRecord]) -> None:
        items = list(records.items())
        for start in range(0, len(items), 500):
            await self._state.set_many({_key("ticket", ticket_hash): _dump(record)
                                        for ticket_hash, record in items[start:start + 500]})

    async def fresh(self, limit: int = 100) -> list[str]:
        """Tickets created and not yet tracked by the poller, oldest first."""
        found = await self._state.get_prefixed("fresh:", limit)
        return [value for value in found.values() if value]

    async def forget_fresh(self, hashes: Iterable[str]) -> None:
        keys = [_key("fresh", ticket_hash) for ticket_hash in hashes]
        if keys:
            await self._state.delete_many(keys)

    # -- comments --------------------------------------------------------------

    async def own_comments(self, hashes: Iterable[str]) -> dict[str, dict[int, OwnComment]]:
        found = await self._many("own", hashes)
        result: dict[str, dict[int, OwnComment]] = {}
        for ticket_hash, raw in found.items():
            if isinstance(raw, dict):
                result[ticket_hash] = {
                    int(position): comment for position, item in raw.items()
                    if (comment := _build(OwnComment, item)) is not None}
        return result

    async def posting(self, hashes: Iterable[str]) -> dict[str, Pending]:
        """Posts under way, by ticket."""
        found = await self._many("inflight", hashes)
        return {h: p for h, raw in found.items() if (p := _build(Pending, raw)) is not None}

    async def start_post(self, ticket_hash: str, key: str | None, pending: Pending) -> None:
        values = {_key("inflight", ticket_hash): _dump(pending)}
        if key is not None:
            values[_key("post", key)] = _dump(pending)
        await self._state.set_many(values)

    async def finish_post(
        self, ticket_hash: str, key: str | None, own: dict[int, OwnComment], done: Done
    ) -> None:
        """Record the posted comments and the result in one statement, then
        drop the in-flight marker (the poller defers the ticket until then)."""
        current = (await self.own_comments([ticket_hash])).get(ticket_hash, {})
        merged = {**current, **own}
        values = {_key("own", ticket_hash): json.dumps(
            {str(position): asdict(comment) for position, comment in merged.items()})}
        if key is not None:
            values[_key("post", key)] = _dump(done)
        await self._state.set_many(values)
        await self._state.delete(_key("inflight", ticket_hash))

    async def post_outcome(self, key: str) -> Pending | Done | None:
        return await self._outcome("post", key)

    # -- creations ---------------------------------------------------------------

    async def creation_outcome(self, key: str) -> Pending | Done | None:
        return await self._outcome("create", key)

    async def start_creation(self, key: str, pending: Pending) -> None:
        await self._state.set(_key("create", key), _dump(pending))

    async def finish_creation(self, key: str | None, ticket_hash: str,
                              record: TicketRecord) -> None:
        """The ticket's record, the creation's outcome, and a "fresh" mark
        the poller drops once it tracks the ticket: while `ticket_list`
        cannot be read, fresh marks are how it finds new tickets (created in
        any process)."""
        values = {_key("ticket", ticket_hash): _dump(record),
                  _key("fresh", ticket_hash): ticket_hash}
        if key is not None:
            values[_key("create", key)] = _dump(Done(remote_id=ticket_hash))
        await self._state.set_many(values)

    # -- agents --------------------------------------------------------------------

    async def agent(self, remote_agent_id: str) -> AgentLink | None:
        raw = _load(await self._state.get(_key("agent", remote_agent_id)))
        if not isinstance(raw, dict) or not isinstance(raw.get("api_key"), str):
            return None
        return AgentLink(login=str(raw.get("login", "")), api_key=SecretStr(raw["api_key"]),
                         fio=str(raw.get("fio", "")), user_hash=raw.get("user_hash"))

    async def save_agent(self, remote_agent_id: str, link: AgentLink) -> None:
        await self._state.set(_key("agent", remote_agent_id), json.dumps({
            "login": link.login, "api_key": link.api_key.get_secret_value(),
            "fio": link.fio, "user_hash": link.user_hash}))

    async def forget_agent(self, remote_agent_id: str) -> None:
        await self._state.delete(_key("agent", remote_agent_id))

    # -- locks and origins ---------------------------------------------------------

    async def lock_notes(self, hashes: Iterable[str]) -> dict[str, LockNote]:
        found = await self._many("lock", hashes)
        return {h: n for h, raw in found.items() if (n := _build(LockNote, raw)) is not None}

    async def save_lock_note(self, ticket_hash: str, note: LockNote | None) -> None:
        if note is None:
            await self._state.delete(_key("lock", ticket_hash))
        else:
            await self._state.set(_key("lock", ticket_hash), _dump(note))

    async def origins(self, hashes: Iterable[str]) -> dict[str, OriginNote]:
        found = await self._many("origin", hashes)
        return {h: n for h, raw in found.items() if (n := _build(OriginNote, raw)) is not None}

    async def save_origin(self, ticket_hash: str, note: OriginNote) -> None:
        await self._state.set(_key("origin", ticket_hash), _dump(note))

    # -- plumbing ------------------------------------------------------------------

    async def _outcome(self, kind: str, key: str) -> Pending | Done | None:
        raw = _load(await self._state.get(_key(kind, key)))
        if isinstance(raw, dict) and "remote_id" in raw:
            return _build(Done, raw)
        return _build(Pending, raw)

    async def _many(self, kind: str, names: Iterable[str]) -> dict[str, Any]:
        wanted = {_key(kind, name): name for name in dict.fromkeys(names)}
        found: dict[str, Any] = {}
        keys = list(wanted)
        # Bounded IN lists: thousands of tickets are read in one cycle.
        for start in range(0, len(keys), 500):
            rows = await self._state.get_many(keys[start:start + 500])
            for key, value in rows.items():
                found[wanted[key]] = _load(value)
        return found


def _key(kind: str, name: str) -> str:
    if len(name) > _KEY_ROOM:
        name = "sha256:" + hashlib.sha256(name.encode()).hexdigest()
    return f"{kind}:{name}"


def _dump(record: Any) -> str:
    return json.dumps(asdict(record), ensure_ascii=False)


def _load(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        log.warning("ignoring an unreadable Zenlix bridge record")
        return None


def _build(cls: type[T], raw: Any) -> T | None:
    if not isinstance(raw, dict):
        return None
    try:
        return cls(**raw)
    except TypeError:
        return None
