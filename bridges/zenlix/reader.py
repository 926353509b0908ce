"""Reading Zenlix as the service account: tickets, lists, comments, people
and departments, with the caches reading needs (the bridge's own ticket
records, user names, the department list). Shared by the bridge and its
poller.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from bridges.base import RemoteTicket
from bridges.errors import NotFound, Unavailable
from bridges.parsing import readable
from bridges.zenlix.client import ZenlixClient
from bridges.zenlix.clock import Clock
from bridges.zenlix.config import HASH_PATTERN, ZenlixSettings
from bridges.zenlix.mapping import TicketFacts, name_key, remote_ticket
from bridges.zenlix.models import (
    Comment,
    ListedTicket,
    Named,
    TicketDetail,
    UserInfo,
    UserShort,
    first_of,
    list_of,
)
from bridges.zenlix.records import LockNote, TicketRecord, ZenlixRecords

log = logging.getLogger("deskbridge.zenlix")

PROVIDER = "zenlix"
P = TypeVar("P", bound=BaseModel)

# A ticket hash found not to be ours is looked up again after this long: a
# ticket another process is creating may appear in the list before its record.
NOT_OURS_FOR_SECONDS = 120.0
DEPARTMENTS_FOR_SECONDS = 300.0


class ZenlixReader:
    def __init__(self, client: ZenlixClient, records: ZenlixRecords,
                 settings: ZenlixSettings, clock: Clock) -> None:
        self.client = client
        self.records = records
        self.settings = settings
        self._clock = clock
        # Records of tickets this bridge created; never changed once written.
        self.known: dict[str, TicketRecord] = {}
        self._not_ours: dict[str, float] = {}
        self._user_names: dict[str, str] = {}
        self._departments: tuple[float, list[Named]] | None = None
        self.service_hash: str | None = None  # the service account's user hash, once known
        self._service_priv: int | None = None

    def remember(self, ticket_hash: str, record: TicketRecord) -> None:
        """A ticket this bridge just created."""
        self.known[ticket_hash] = record
        self._not_ours.pop(ticket_hash, None)

    async def view(self, ticket_hash: str) -> TicketDetail:
        require_hash(ticket_hash)
        return ticket_detail(
            await self.client.call("ticket_view", {"ticket_hash": ticket_hash}))

    async def comments(self, ticket_hash: str) -> list[Comment]:
        answer = await self.client.call("get_ticket_comments", {"ticket_hash": ticket_hash})
        return parse_rows(Comment, list_of(answer, "comments"))

    async def ticket_list(self, kind: str) -> dict[str, ListedTicket]:
        answer = await self.client.call("ticket_list", {"type": kind})
        listed: dict[str, ListedTicket] = {}
        for row in parse_rows(ListedTicket, list_of(answer, "tickets")):
            if row.ticket_hash is None:
                continue
            # Two tickets of one second share a hash; the API reaches the older.
            known = listed.get(row.ticket_hash)
            if known is None or row.id_ticket < known.id_ticket:
                listed[row.ticket_hash] = row
        return listed

    async def list_open(self) -> dict[str, ListedTicket]:
        listed = await self.ticket_list("in")
        if await self.service_is_chief():
            return listed  # a chief sees every open ticket in `in` and `out` alike
        for ticket_hash, row in (await self.ticket_list("out")).items():
            listed.setdefault(ticket_hash, row)
        return listed

    async def service_is_chief(self) -> bool:
        """Whether the service account is a chief (priv 2), found once: its
        row in the user search, told from other hits by its name."""
        if self._service_priv is None:
            name = await self.client.service_account_name()
            rows = [row for row in await self.search_users(self.settings.login)
                    if row.is_client != 1 and name_key(row.fio) == name_key(name)]
            if len(rows) == 1:
                self.service_hash = self.service_hash or rows[0].user_hash
                self._service_priv = rows[0].priv
            else:
                self._service_priv = -1  # unknown: read both lists
        return self._service_priv == 2

    async def search_users(self, query: str) -> list[UserShort]:
        answer = await self.client.call("get_users_list", {"find_param": query})
        return parse_rows(UserShort, list_of(answer, "users"))

    async def department_staff(self, unit: int) -> list[UserShort]:
        """`get_user_by_dep`: the department's staff (no clients, no deleted
        accounts, never the installation's first admin)."""
        answer = await self.client.call("get_user_by_dep", {"dep_code": str(unit)})
        return parse_rows(UserShort, list_of(answer, "users"))

    async def user_info(self, user_hash: str) -> UserInfo:
        answer = await self.client.call("get_user_info", {"user_hash": user_hash})
        return parse(UserInfo, first_of(answer, "info") or {})

    async def user_name(self, user_hash: str) -> str:
        if user_hash not in self._user_names:
            info = await self.user_info(user_hash)
            self._user_names[user_hash] = info.fio or user_hash[:8]
        return self._user_names[user_hash]

    async def units(self) -> list[Named]:
        now = self._clock.time()
        if self._departments is None or now - self._departments[0] > DEPARTMENTS_FOR_SECONDS:
            self._departments = (now, await self.named_list("get_unit_list"))
        return self._departments[1]

    async def named_list(self, mode: str) -> list[Named]:
        return parse_rows(Named, list_of(await self.client.call(mode), "list"))

    async def records_of(self, hashes: Sequence[str]) -> dict[str, TicketRecord]:
        missing = [h for h in hashes if h not in self.known]
        if missing:
            self.known.update(await self.records.tickets(missing))
        return {h: self.known[h] for h in hashes if h in self.known}

    async def ours(self, hashes: Sequence[str]) -> set[str]:
        """Which of these tickets this bridge created: only those have a
        conversation in Telegram, so only their comments are read."""
        now = self._clock.time()
        wanted = [h for h in hashes
                  if h in self.known or now - self._not_ours.get(h, -math.inf)
                  > NOT_OURS_FOR_SECONDS]
        found = await self.records_of(wanted)
        for ticket_hash in wanted:
            if ticket_hash not in found:
                self._not_ours[ticket_hash] = now
        return set(found)

    async def remote_of(self, detail: TicketDetail) -> RemoteTicket:
        ticket_hash = detail.ticket_hash or ""
        record = (await self.records_of([ticket_hash])).get(ticket_hash)
        return await self.remote(detail, record)

    async def remote(self, detail: TicketDetail, record: TicketRecord | None,
                      notes: dict[str, LockNote] | None = None) -> RemoteTicket:
        ticket_hash = detail.ticket_hash or ""
        name = None
        if detail.lock_by:
            if notes is None:
                notes = await self.records.lock_notes([ticket_hash])
            note = notes.get(ticket_hash)
            if note is not None and note.by == detail.lock_by:
                name = note.name
            else:
                name = await self.user_name(detail.lock_by)
        facts = (TicketFacts(customer_ref=record.customer_ref, subject=record.subject)
                 if record is not None else None)
        return remote_ticket(detail, zone=self.settings.zone,
                             url=self.settings.ticket_url(ticket_hash), facts=facts,
                             assignee_name=name)


# -- payloads --------------------------------------------------------------------


def require_hash(ticket_hash: str) -> None:
    if not HASH_PATTERN.match(ticket_hash):
        raise NotFound(f"not a Zenlix ticket: {ticket_hash!r}", provider=PROVIDER)


def ticket_detail(answer: dict[str, Any]) -> TicketDetail:
    # An unknown hash answers `[{"status": null, ...}]` (NotFound from the
    # client); a `ticket` list without a row means the same.
    data = first_of(answer, "ticket")
    if data is None:
        raise NotFound("no such Zenlix ticket", provider=PROVIDER)
    return parse(TicketDetail, data)


def parse(model: type[P], data: dict[str, Any]) -> P:
    try:
        return model.model_validate(data)
    except ValidationError:
        raise Unavailable(f"Zenlix answered a {model.__name__} of an unexpected shape",
                          provider=PROVIDER) from None


def parse_rows(model: type[P], rows: list[dict[str, Any]]) -> list[P]:
    """The rows that can be read; one that cannot is logged with its id and
    skipped, never the whole answer (comments never are: see models.py)."""
    return readable(model, rows, provider="Zenlix", kind=model.__name__,
                    id_fields=("ticket_hash", "id_ticket", "id"))
