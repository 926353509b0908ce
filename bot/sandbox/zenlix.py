"""A fake ZENLIX 2.95 JSON API (providers/zenlix.md) on 127.0.0.1, over real HTTP.

Faithful to the real server where a bridge can trip:

* `POST /api.php` (also `/api`) with a raw JSON body, Content-Type ignored; a
  body that is not JSON or has no `mode` gets 200 and only whitespace; every
  answer ends in four spaces; an unknown path answers 200 with an HTML page.
* Answers are a one-element array, except `auth`'s bare object. A failed
  sign-in carries a random `uniq_id` next to `status: "error"`; keys never
  expire (`revoke_keys` stands in for an admin resetting them); any
  `device_token` registers a push device (`devices`).
* Missing parameters are reported before a bad key; unknown modes (the seed's
  `"get_ticket_comments "` too) are `mode-param is not valid`.
* Strict MariaDB: a character outside the BMP in a ticket, comment or referral
  text, a comment over 2048 characters, or a non-numeric `unit_id` (even "")
  is HTTP 500 with an empty body and nothing stored. `strict=False` gives the
  lenient install instead (`?` for such characters, comments cut).
* `create_ticket` needs all its fields, takes `subj` as a subject id (else no
  subject), clamps `prio` to 1, refuses an unknown client with `error data in
  fields`, and derives the hash from the creation second: two tickets of one
  second share it, and `ticket_view` then finds the older.
* lock/unlock/ok/no_ok answer `status_ticket` (before), `lock_by_fio`,
  `ok_by_fio`, `access_priv` (after), also on refusals (`you have no
  priviliges`); `ticket_ok` needs the caller's lock and keeps it;
  `ticket_no_ok` leaves the ticket locked by the caller; locking a held
  ticket is refused; a chief (priv 2) may unlock and reopen others' tickets.
* `refer_ticket` needs all five fields and appends `msg` to the ticket's text;
  its `user_to_id` goes through the server's hash lookup, so "0" (unlike in
  `create_ticket`) is stored as NULL and ordinary agents of the department no
  longer see the ticket (they see department tickets by `find_in_set('0', ...)`).
* Permissions are the server's table (`get_ticket_action_priv_api`): an
  ordinary agent acts only on tickets they opened, or of their department
  addressed to the department or to them; a lock someone else holds can only
  be undone, by a head or a chief, never referred or closed.
* A disabled account (status 0) cannot sign in but its API key keeps working;
  only a deleted one (status 2) is refused.
* `get_users_list` searches names, logins and phones (not e-mail), `%` and `_`
  are wildcards, at most 10 rows, status as `status_user`.
* `ticket_view` of an unknown hash is `[{"status": null, ...}]`;
  `add_ticket_comment` on one answers ok and stores an orphan comment.
* Comments come oldest first, cut at `[file:` and then through PHP's
  `strip_tags` (ported byte for byte: a `<` not followed by ASCII whitespace
  starts a tag, a `<` at the very end too), with `usr_fio`, no id;
  `ticket_view` strips the ticket text the same way.
* `ticket_list` cuts text and subject with ZENLIX's `cutstr_api` (PHP
  `wordwrap(.., 150, '<br>', true)`, first line): with no ASCII space before
  byte 150 a multibyte character is cut in half, `json_encode` fails and the
  whole answer is the four spaces. Rows carry `lock_by_other_fio` and
  `ok_by_fio` (short names), statuses `ok_by_me`/`ok_by_other` for done
  tickets; lists are newest first; a chief sees every open ticket in `in` and `out`.
* Dates in the configured zone (default Europe/Kiev), from an injectable clock.

Test helpers act as people in the Zenlix UI (`comment_as`, `lock_as`,
`close_as`, `reopen_as`, `refer_as`, `archive`), fill the store directly
(`seed_ticket`, for benches), count requests (`request_count`, `requests`)
and inject faults (`fail_next`: 500, hang, empty body, HTML page;
`unreadable`: tickets `ticket_list` shows with an `id_ticket` no client reads).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

JsonDict = dict[str, Any]

COMMENT_LIMIT = 2048
LIST_TEXT_BYTES = 150
SEARCH_LIMIT = 10
TRAILER = "    "  # every answer of api.php ends in four spaces
NOT_FOUND_PAGE = "<!DOCTYPE html><html><head><title>404</title></head><body>Not found</body></html>"

CHIEF, HEAD, USER = 2, 0, 1
DISABLED, ACTIVE, DELETED = 0, 1, 2


class _Crash(Exception):
    """What strict MariaDB does to the PHP script: HTTP 500, empty body."""


class _Unencodable(Exception):
    """`json_encode` met invalid UTF-8 and returned false: `print false`
    prints nothing, so the answer is only the four trailing spaces."""


@dataclass
class FakeUser:
    user_hash: str
    fio: str
    login: str | None = None
    password: str | None = None
    priv: int = USER
    is_client: int = 0
    units: list[int] = field(default_factory=list)
    tel: str = ""
    email: str = ""
    status: int = 1


@dataclass
class FakeTicket:
    id: int
    hash: str
    subj: str  # a subject id, "" for none
    text: str
    client: str
    unit: int
    user_to: str  # "0" (the department) or comma-separated user hashes
    prio: int
    user_init: str
    created: str
    lock_by: str | None = None
    ok_by: str | None = None
    ok: bool = False
    ok_date: str | None = None
    arch: bool = False


@dataclass
class FakeComment:
    ticket_id: int | None  # None: added to an unknown hash
    author: str
    dt: str
    text: str  # as stored, before the API strips it


@dataclass
class _Fault:
    kind: str  # "500" | "hang" | "empty" | "html"
    mode: str | None
    times: int


class FakeZenlix:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        timezone: str = "Europe/Kiev",
        strict: bool = True,
    ) -> None:
        self.clock = clock
        self.zone = ZoneInfo(timezone)
        self.strict = strict
        self.users: dict[str, FakeUser] = {}
        self.units: dict[int, str] = {}
        self.subjects: dict[int, str] = {}
        self.positions: dict[int, str] = {1: "administrator"}
        self.tickets: list[FakeTicket] = []  # read-only for tests: use the helpers to change
        self.comments: list[FakeComment] = []
        self._by_hash: dict[str, FakeTicket] = {}  # the oldest ticket of each hash
        self._comments_of: dict[int | None, list[FakeComment]] = {}
        self.keys: dict[str, str] = {}  # API key -> user hash
        self.unreadable: set[str] = set()  # ticket hashes listed in a shape no client reads
        self.devices: list[tuple[str, str]] = []  # (user hash, device token)

        self.request_count = 0
        self.requests: Counter[str] = Counter()
        self.bodies: list[JsonDict] = []
        self.hang_seconds = 30.0
        self._faults: list[_Fault] = []
        self._ticket_ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                                     shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeZenlix:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- building the world ----------------------------------------------------------

    def add_unit(self, unit_id: int, name: str) -> int:
        self.units[unit_id] = name
        return unit_id

    def add_subject(self, subject_id: int, name: str) -> int:
        self.subjects[subject_id] = name
        return subject_id

    def add_staff(self, login: str, password: str, fio: str, *, priv: int = USER,
                  units: tuple[int, ...] = (1,), tel: str = "", email: str = "") -> str:
        user = FakeUser(_new_hash(), fio, login, password, priv, 0, list(units), tel, email)
        self.users[user.user_hash] = user
        return user.user_hash

    def add_client(self, fio: str, *, tel: str = "", email: str = "",
                   login: str | None = None, password: str | None = None) -> str:
        user = FakeUser(_new_hash(), fio, login, password, USER, 1, [], tel, email)
        self.users[user.user_hash] = user
        return user.user_hash

    def revoke_keys(self) -> None:
        """Every API key stops working (an admin reset them)."""
        self.keys.clear()

    # -- reading the store -------------------------------------------------------------

    def ticket(self, ticket_hash: str) -> FakeTicket:
        """The ticket a hash leads to (the older one when two share it)."""
        found = self._ticket(ticket_hash)
        if found is None:
            raise KeyError(ticket_hash)
        return found

    def comments_of(self, ticket_hash: str) -> list[FakeComment]:
        return list(self._comments_of.get(self.ticket(ticket_hash).id, []))

    def calls(self, mode: str) -> list[JsonDict]:
        return [body for body in self.bodies if body.get("mode") == mode]

    # -- acting as people in the Zenlix UI ---------------------------------------------

    def seed_ticket(self, client: str, text: str, *, unit: int = 1, subj: str = "",
                    by: str | None = None, prio: int = 1, ticket_hash: str | None = None) -> str:
        """A ticket put straight into the store (as if made in the Zenlix UI),
        with a hash of its own unless given one."""
        ticket = FakeTicket(
            id=next(self._ticket_ids), hash=ticket_hash or _new_hash(), subj=subj, text=text,
            client=client, unit=unit, user_to="0", prio=prio, user_init=by or client,
            created=self.now())
        self._store_ticket(ticket)
        return ticket.hash

    def delete_ticket(self, ticket_hash: str) -> None:
        """What an admin's delete does: the ticket is gone, hash and all."""
        ticket = self.ticket(ticket_hash)
        self.tickets.remove(ticket)
        del self._by_hash[ticket_hash]
        for other in self.tickets:
            self._by_hash.setdefault(other.hash, other)

    def comment_as(self, user_hash: str, ticket_hash: str, text: str) -> None:
        self._store_comment(FakeComment(self.ticket(ticket_hash).id, user_hash, self.now(), text))

    def lock_as(self, user_hash: str, ticket_hash: str) -> None:
        self.ticket(ticket_hash).lock_by = user_hash

    def unlock_as(self, user_hash: str, ticket_hash: str) -> None:
        self.ticket(ticket_hash).lock_by = None

    def close_as(self, user_hash: str, ticket_hash: str) -> None:
        ticket = self.ticket(ticket_hash)
        ticket.lock_by = ticket.lock_by or user_hash
        ticket.ok, ticket.ok_by, ticket.ok_date = True, user_hash, self.now()

    def reopen_as(self, user_hash: str, ticket_hash: str) -> None:
        ticket = self.ticket(ticket_hash)
        ticket.ok, ticket.ok_by, ticket.ok_date, ticket.lock_by = False, None, None, user_hash

    def refer_as(self, user_hash: str, ticket_hash: str, unit: int, to: str = "0") -> None:
        ticket = self.ticket(ticket_hash)
        ticket.unit, ticket.user_to, ticket.lock_by = unit, to, None

    def archive(self, ticket_hash: str) -> None:
        self.ticket(ticket_hash).arch = True

    # -- faults -----------------------------------------------------------------------------

    def fail_next(self, kind: str = "500", *, mode: str | None = None, times: int = 1) -> None:
        """The next `times` calls (of `mode`, or any) answer HTTP 500 with an
        empty body, hang for `hang_seconds`, answer only whitespace, or an HTML page."""
        if kind not in ("500", "hang", "empty", "html"):
            raise ValueError(kind)
        self._faults.append(_Fault(kind, mode, times))

    def _take_fault(self, mode: str) -> _Fault | None:
        for fault in self._faults:
            if fault.mode in (None, mode):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    # -- HTTP ---------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path not in ("/api.php", "/api"):
            return web.Response(text=NOT_FOUND_PAGE, content_type="text/html")
        raw = await request.read()
        self.request_count += 1
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict) or "mode" not in data:
            return web.Response(text=TRAILER, content_type="application/json")
        mode = str(data["mode"])
        self.requests[mode] += 1
        self.bodies.append(dict(data))
        fault = self._take_fault(mode)
        if fault is not None:
            if fault.kind == "500":
                return web.Response(status=500, body=b"")
            if fault.kind == "empty":
                return web.Response(text=TRAILER, content_type="application/json")
            if fault.kind == "html":
                return web.Response(text=NOT_FOUND_PAGE, content_type="text/html")
            await asyncio.sleep(self.hang_seconds)
        handler = _MODES.get(mode)
        try:
            answer = handler(self, data) if handler else _error("mode-param is not valid")
        except _Crash:
            return web.Response(status=500, body=b"")
        except _Unencodable:
            return web.Response(text=TRAILER, content_type="application/json")
        wrapped: Any = answer if mode == "auth" else [answer]
        return web.Response(text=json.dumps(wrapped, ensure_ascii=False) + TRAILER,
                            content_type="application/json")

    # -- helpers of the modes ---------------------------------------------------------------

    def now(self) -> str:
        return datetime.fromtimestamp(self.clock(), self.zone).strftime("%Y-%m-%d %H:%M:%S")

    def _ticket(self, ticket_hash: Any) -> FakeTicket | None:
        return self._by_hash.get(ticket_hash) if isinstance(ticket_hash, str) else None

    def _store_ticket(self, ticket: FakeTicket) -> None:
        self.tickets.append(ticket)
        self._by_hash.setdefault(ticket.hash, ticket)

    def _store_comment(self, comment: FakeComment) -> None:
        self.comments.append(comment)
        self._comments_of.setdefault(comment.ticket_id, []).append(comment)

    def _caller(self, data: JsonDict, *params: str) -> FakeUser | JsonDict:
        """The user of a valid key, or the error answer: missing parameters
        are reported before a bad key."""
        if any(data.get(name) is None for name in ("uniq_id", *params)):
            return _error("not all params")
        user_hash = self.keys.get(str(data["uniq_id"]))
        user = self.users.get(user_hash or "")
        # validate_user_by_api: `status!=2`, so a disabled account's key works.
        if user is None or user.status == DELETED:
            return _error("system auth error")
        return user

    def _storable(self, text: str, *, limit: int | None = None) -> str:
        if any(ord(char) > 0xFFFF for char in text) or (limit and len(text) > limit):
            if self.strict:
                raise _Crash()
            text = "".join("????" if ord(char) > 0xFFFF else char for char in text)
            return text[:limit] if limit else text
        return text

    def _unit_id(self, value: Any) -> int:
        text = str(value)
        if not text.isdigit():
            raise _Crash()  # strict mode: '' or 'abc' into an INT column
        return int(text)

    def _state(self, ticket: FakeTicket, user: FakeUser) -> str:
        """The ticket's status as `ticket_list`, `ticket_view` and the actions
        show it to `user`."""
        if ticket.arch:
            return "arch"
        if ticket.ok:
            return "ok_by_me" if ticket.ok_by == user.user_hash else "ok_by_other"
        if ticket.lock_by:
            return "lock_by_me" if ticket.lock_by == user.user_hash else "lock_by_other"
        return "free"

    _before = _state  # what lock/unlock/ok/no_ok answer with (before the action)

    def _allowed(self, ticket: FakeTicket, user: FakeUser) -> list[str]:
        """`get_ticket_action_priv_api`: whether the user may act on the
        ticket at all (a chief always; a head on tickets of their departments
        or opened by them; an ordinary agent also needs the ticket addressed
        to the department or to them), then what the state allows."""
        addressed = ticket.user_to.split(",")
        if user.priv == USER:
            entitled = ticket.user_init == user.user_hash or (
                ticket.unit in user.units
                # PHP 8's `user_to_id == 0`: true for "0" and for NULL.
                and (ticket.user_to in ("0", "") or user.user_hash in addressed))
        else:
            entitled = user.priv == CHIEF or ticket.user_init == user.user_hash \
                or ticket.unit in user.units
        if not entitled:
            return []
        state = self._state(ticket, user)
        table = {
            "free": ["ref", "lock"], "lock_by_me": ["ref", "unlock", "ok"],
            "ok_by_me": ["un_ok"],
            "ok_by_other": [] if user.priv == USER else ["un_ok"],
            "lock_by_other": [] if user.priv == USER else ["unlock"],
        }
        return table.get(state, [])

    def _action_answer(self, ticket: FakeTicket, user: FakeUser, before: str) -> JsonDict:
        allowed = self._allowed(ticket, user)
        return {
            "status_ticket": before,
            "lock_by_fio": self._fio(ticket.lock_by),
            "ok_by_fio": self._fio(ticket.ok_by),
            "access_priv": ",".join(allowed) if allowed else "no_priv",
        }

    def _fio(self, user_hash: str | None) -> str | None:
        user = self.users.get(user_hash or "")
        return user.fio if user else None

    def _short(self, user_hash: str | None) -> str:
        """`nameshort(name_of_user_ret_nolink(id))`: "" for nobody."""
        return _nameshort(self._fio(user_hash) or "")

    def _visible(self, ticket: FakeTicket, user: FakeUser, kind: str) -> bool:
        # find_in_set(user, user_to_id), and find_in_set('0', user_to_id) for
        # the department's tickets: NULL (a referral to "0") matches neither.
        addressed = ticket.user_to.split(",")
        mine = user.user_hash in addressed
        to_unit = "0" in addressed and ticket.unit in user.units
        if kind == "arch":
            if not ticket.arch:
                return False
            if user.priv == CHIEF:
                return True
            if user.priv == HEAD:
                return ticket.unit in user.units or ticket.user_init == user.user_hash
            return (mine and ticket.unit in user.units) or to_unit \
                or ticket.user_init == user.user_hash
        if ticket.arch:
            return False
        if user.priv == CHIEF:
            return True
        if kind == "out":
            return ticket.user_init == user.user_hash
        if user.priv == HEAD:
            return ticket.unit in user.units
        return mine or to_unit

    def _addressed_hash(self, ticket: FakeTicket) -> str | None:
        """`get_user_hash_by_id(user_to_id)`: null for "0" and NULL."""
        if ticket.user_to in ("", "0"):
            return None
        return ticket.user_to

    def _listed(self, ticket: FakeTicket, user: FakeUser) -> JsonDict:
        state = self._state(ticket, user)
        subject = self.subjects.get(_int(ticket.subj), "")
        return {
            "id_ticket": "#" if ticket.hash in self.unreadable else ticket.id,
            "ticket_hash": ticket.hash,
            "subj": _cutstr_api(subject), "text": _cutstr_api(ticket.text),
            "date_created": ticket.created, "status": state, "prio": ticket.prio,
            "lock_by_other_fio": self._short(ticket.lock_by) if state == "lock_by_other"
            else "0",
            "ok_by_fio": self._short(ticket.ok_by) if state == "ok_by_other" else "0",
            "user_init_hash": ticket.user_init, "client_hash": ticket.client,
            "to_user_hash": self._addressed_hash(ticket),
            "user_init_fio": self._short(ticket.user_init),
            "client_fio": self._short(ticket.client),
            "to_user_fio": self._short(self._addressed_hash(ticket)),
            "to_unit_id": ticket.unit,
            "access_priv": self._allowed(ticket, user) or ["no_priv"],
        }

    def _detail(self, ticket: FakeTicket, user: FakeUser) -> JsonDict:
        # `<br>` variants become line breaks, then strip_tags.
        text = re.sub(r"<br\s*/?>", "\r\n", ticket.text, flags=re.IGNORECASE)
        return {
            "id_ticket": ticket.id, "ticket_hash": ticket.hash,
            "subj": self.subjects.get(_int(ticket.subj), ""), "text": _strip_tags(text),
            "date_created": ticket.created, "user_init_id": ticket.user_init,
            "client_id": ticket.client, "unit_id": ticket.unit,
            "user_to_id": self._addressed_hash(ticket), "status": self._state(ticket, user),
            "lock_by": ticket.lock_by, "ok_by": ticket.ok_by,
            "lock_by_fio": self._short(ticket.lock_by), "ok_by_fio": self._short(ticket.ok_by),
            "access_priv": ",".join(self._allowed(ticket, user)) or "no_priv",
            "prio": ticket.prio, "ok_date": ticket.ok_date, "deadline_time": None,
        }

    def _user_row(self, user: FakeUser, status_field: str) -> JsonDict:
        return {status_field: user.status, "unit": ",".join(map(str, user.units)) or "null",
                "uniq_id": user.user_hash, "fio": user.fio, "priv": user.priv,
                "is_client": user.is_client, "email": user.email}

    # -- the modes ------------------------------------------------------------------------------

    def _auth(self, data: JsonDict) -> JsonDict:
        if data.get("login") is None or data.get("pass") is None:
            return {"uniq_id": _new_hash(), "status": "error",
                    "error_description": "input values not alls"}
        user = next((u for u in self.users.values() if u.login == data["login"]
                     and u.password == data["pass"] and u.status == 1), None)
        if user is None:
            return {"uniq_id": _new_hash(), "status": "error",
                    "error_description": "system auth error", "fio": None}
        if "device_token" in data:
            self.devices.append((user.user_hash, str(data["device_token"])))
        key = next((k for k, h in self.keys.items() if h == user.user_hash), None) or _new_hash()
        self.keys[key] = user.user_hash
        return {"uniq_id": key, "status": "ok", "error_description": None, "fio": user.fio,
                "name_only": user.fio.split()[0], "usr_img": ""}

    def _ticket_list(self, data: JsonDict) -> JsonDict:
        user = self._caller(data, "type")
        if isinstance(user, dict):
            return user
        kind = str(data["type"])
        tickets = [self._listed(t, user) for t in reversed(self.tickets)
                   if self._visible(t, user, kind)]
        if any(_invalid_utf8(row["text"]) or _invalid_utf8(row["subj"]) for row in tickets):
            raise _Unencodable()
        return {"status": "ok", "error_description": None,
                "tickets": [{**row, "text": row["text"].decode(), "subj": row["subj"].decode()}
                            for row in tickets]}

    def _ticket_view(self, data: JsonDict) -> JsonDict:
        user = self._caller(data, "ticket_hash")
        if isinstance(user, dict):
            return user
        ticket = self._ticket(data["ticket_hash"])
        if ticket is None:
            return {"status": None, "error_description": None}
        return {"ticket": [self._detail(ticket, user)], "status": "ok", "error_description": None}

    def _action(self, data: JsonDict, needed: str,
                apply: Callable[[FakeTicket, FakeUser], None]) -> JsonDict:
        user = self._caller(data, "ticket_hash")
        if isinstance(user, dict):
            return user
        ticket = self._ticket(data["ticket_hash"])
        if ticket is None:
            return _error("error data in fields")
        before = self._before(ticket, user)
        if needed not in self._allowed(ticket, user):
            return {**_error("you have no priviliges"), **self._action_answer(ticket, user,
                                                                               before)}
        apply(ticket, user)
        return {"status": "ok", "error_description": None,
                **self._action_answer(ticket, user, before)}

    def _lock(self, data: JsonDict) -> JsonDict:
        def apply(ticket: FakeTicket, user: FakeUser) -> None:
            ticket.lock_by = user.user_hash
        return self._action(data, "lock", apply)

    def _unlock(self, data: JsonDict) -> JsonDict:
        def apply(ticket: FakeTicket, user: FakeUser) -> None:
            ticket.lock_by = None
        return self._action(data, "unlock", apply)

    def _ok(self, data: JsonDict) -> JsonDict:
        def apply(ticket: FakeTicket, user: FakeUser) -> None:
            ticket.ok, ticket.ok_by, ticket.ok_date = True, user.user_hash, self.now()
        return self._action(data, "ok", apply)

    def _no_ok(self, data: JsonDict) -> JsonDict:
        def apply(ticket: FakeTicket, user: FakeUser) -> None:
            # Back to locked-by-me, not free.
            ticket.ok, ticket.ok_by, ticket.ok_date = False, None, None
            ticket.lock_by = user.user_hash
        return self._action(data, "un_ok", apply)

    def _create_ticket(self, data: JsonDict) -> JsonDict:
        fields = ("user_to_id", "subj", "msg", "client_id", "unit_id", "prio")
        user = self._caller(data, *fields)
        if isinstance(user, dict):
            return user
        unit = self._unit_id(data["unit_id"])
        text = self._storable(str(data["msg"]))
        client = self.users.get(str(data["client_id"]))
        user_to = str(data["user_to_id"]).replace(" ", "")
        if client is None or any(part != "0" and part not in self.users
                                 for part in user_to.split(",")):
            return _error("error data in fields")
        subj = str(data["subj"]) if _int(data["subj"]) in self.subjects else ""
        prio = _int(data["prio"])
        second = int(self.clock())
        ticket = FakeTicket(
            id=next(self._ticket_ids), hash=hashlib.md5(str(second).encode()).hexdigest(),
            subj=subj, text=text, client=client.user_hash, unit=unit, user_to=user_to,
            prio=prio if prio in (0, 1, 2) else 1, user_init=user.user_hash, created=self.now())
        self._store_ticket(ticket)
        return {"status": "ok", "ticket_hash": ticket.hash, "ticket_id": ticket.id,
                "error_description": None}

    def _refer_ticket(self, data: JsonDict) -> JsonDict:
        user = self._caller(data, "user_to_id", "msg", "unit_id", "ticket_hash")
        if isinstance(user, dict):
            return user
        unit = self._unit_id(data["unit_id"])
        note = self._storable(str(data["msg"]))
        ticket = self._ticket(data["ticket_hash"])
        if ticket is None:
            return _error("error data in fields")
        if "ref" not in self._allowed(ticket, user):
            return _error("you have no priviliges")
        # get_user_id_by_hash: each hash looked up; "0" and unknown ones are
        # no user, stored as NULL (or an empty item of the list).
        addressed = [part if part in self.users else ""
                     for part in str(data["user_to_id"]).split(",")]
        ticket.unit, ticket.user_to, ticket.lock_by = unit, ",".join(addressed), None
        if len(note.encode()) > 2:
            ticket.text += "<br>" + f"<strong><small>{user.fio} referred:</small> </strong>" \
                + _strip_tags(note)
        return {"status": "ok", "error_description": None}

    def _add_comment(self, data: JsonDict) -> JsonDict:
        user = self._caller(data, "msg", "ticket_hash")
        if isinstance(user, dict):
            return user
        text = self._storable(str(data["msg"]), limit=COMMENT_LIMIT)
        ticket = self._ticket(data["ticket_hash"])
        self._store_comment(FakeComment(ticket.id if ticket else None, user.user_hash,
                                        self.now(), text))
        return {"status": "ok", "error_description": None}

    def _get_comments(self, data: JsonDict) -> JsonDict:
        user = self._caller(data, "ticket_hash")
        if isinstance(user, dict):
            return user
        ticket = self._ticket(data["ticket_hash"])
        stored = self._comments_of.get(ticket.id, []) if ticket is not None else []
        rows = [{"author": c.author, "text": api_text(c.text), "dt": c.dt, "usr_img": "",
                 "usr_fio": self._fio(c.author), "ticket_code": c.ticket_id} for c in stored]
        return {"comments": rows, "status": "ok", "error_description": None}

    def _user_info(self, data: JsonDict) -> JsonDict:
        caller = self._caller(data, "user_hash")
        if isinstance(caller, dict):
            return caller
        user = self.users.get(str(data["user_hash"]))
        fields = ("unit", "def_unit_id", "def_user_id", "posada", "priv", "unit_desc", "fio",
                  "skype", "adr", "last_time", "lang", "is_client", "tel", "email", "status",
                  "usr_img")
        info: JsonDict = dict.fromkeys(fields)
        if user is not None:
            info.update(unit=",".join(map(str, user.units)), def_unit_id=0, def_user_id="0",
                        posada="0", priv=user.priv, unit_desc="0", fio=user.fio, skype="",
                        adr="", last_time=self.now(), lang="ru", is_client=user.is_client,
                        tel=user.tel, email=user.email, status=user.status, usr_img="")
        return {"status": "ok", "error_description": None, "info": [info]}

    def _unit_info(self, data: JsonDict) -> JsonDict:
        caller = self._caller(data, "unit_code")
        if isinstance(caller, dict):
            return caller
        code = _int(data["unit_code"])
        name = self.units.get(code)
        return {"status": "ok", "error_description": None,
                "info": [{"id": code if name else None, "name": name}]}

    def _named(self, data: JsonDict, items: dict[int, str]) -> JsonDict:
        caller = self._caller(data)
        if isinstance(caller, dict):
            return caller
        return {"status": "ok", "error_description": None,
                "list": [{"id": key, "name": name} for key, name in sorted(items.items())]}

    def _users_by_dep(self, data: JsonDict) -> JsonDict:
        caller = self._caller(data, "dep_code")
        if isinstance(caller, dict):
            return caller
        code = _int(data["dep_code"])
        rows = [self._user_row(u, "status") for u in self.users.values()
                if not u.is_client and code in u.units and u.status != DELETED]
        return {"status": "ok", "error_description": None, "users": rows}

    def _users_list(self, data: JsonDict) -> JsonDict:
        caller = self._caller(data, "find_param")
        if isinstance(caller, dict):
            return caller
        pattern = _like(str(data["find_param"]))
        rows = [self._user_row(u, "status_user") for u in self.users.values()
                if any(pattern.fullmatch(value or "") for value in (u.fio, u.login, u.tel))]
        return {"status": "ok", "error_description": None, "users": rows[:SEARCH_LIMIT]}


_MODES: dict[str, Callable[[FakeZenlix, JsonDict], JsonDict]] = {
    "auth": FakeZenlix._auth,
    "ticket_list": FakeZenlix._ticket_list,
    "ticket_view": FakeZenlix._ticket_view,
    "ticket_lock": FakeZenlix._lock,
    "ticket_unlock": FakeZenlix._unlock,
    "ticket_ok": FakeZenlix._ok,
    "ticket_no_ok": FakeZenlix._no_ok,
    "create_ticket": FakeZenlix._create_ticket,
    "refer_ticket": FakeZenlix._refer_ticket,
    "add_ticket_comment": FakeZenlix._add_comment,
    "get_ticket_comments": FakeZenlix._get_comments,
    "get_user_info": FakeZenlix._user_info,
    "get_unit_info": FakeZenlix._unit_info,
    "get_unit_list": lambda server, data: server._named(data, server.units),
    "get_subj_list": lambda server, data: server._named(data, server.subjects),
    "get_posada_list": lambda server, data: server._named(data, server.positions),
    "get_user_by_dep": FakeZenlix._users_by_dep,
    "get_users_list": FakeZenlix._users_list,
}


def _error(description: str) -> JsonDict:
    return {"status": "error", "error_description": description}


def _new_hash() -> str:
    return secrets.token_hex(16)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _like(find: str) -> re.Pattern[str]:
    """SQL `LIKE '%find%'`, case-insensitive: `%` and `_` stay wildcards."""
    parts = [".*" if c == "%" else "." if c == "_" else re.escape(c) for c in find]
    return re.compile(".*" + "".join(parts) + ".*", re.IGNORECASE | re.DOTALL)


def api_text(stored: str) -> str:
    """A comment as `get_ticket_comments` returns it: cut at `[file:`, then
    through PHP's strip_tags."""
    return _strip_tags(stored.split("[file:", 1)[0])


# -- PHP, ported --------------------------------------------------------------------------

_C_SPACE = frozenset(b" \t\n\v\f\r")  # isspace() in the C locale PHP 8 runs in


def _strip_tags(text: str) -> str:
    """PHP 8.2's `strip_tags($text)` (php_strip_tags_ex without allowed
    tags), on the UTF-8 bytes as PHP sees them. A `<` starts a tag unless the
    next byte is ASCII whitespace, so a `<` at the very end, or before a
    no-break space (C2 A0), starts one too; a tag ends at a `>` outside
    quotes, nested `<` counted; `<?`, `<!` and `<!--` have their own ends."""
    raw = text.encode()
    end = len(raw)
    out = bytearray()
    state = depth = in_q = 0
    lc = 0
    br = 0
    is_xml = False
    p = 0

    def at(index: int) -> int:
        return raw[index] if 0 <= index < end else 0  # PHP strings end in NUL

    while p < end:
        c = raw[p]
        if state == 0:
            if c == 0:
                pass
            elif c == ord("<"):
                if not in_q:
                    if at(p + 1) in _C_SPACE:
                        out.append(c)
                    else:
                        lc, state = c, 1
            elif c == ord(">"):
                if depth:
                    depth -= 1
                elif not in_q:
                    out.append(c)
            else:
                out.append(c)
        elif state == 1:
            if c == ord("<"):
                if not in_q and at(p + 1) not in _C_SPACE:
                    depth += 1
            elif c == ord(">"):
                if depth:
                    depth -= 1
                elif not in_q:
                    lc = c
                    if not (is_xml and at(p - 1) == ord("-")):
                        in_q = state = 0
                        is_xml = False
            elif c in (ord('"'), ord("'")):
                if p != 0 and (not in_q or c == in_q):
                    in_q = 0 if in_q else c
            elif c == ord("!") and at(p - 1) == ord("<"):
                state, lc = 3, c
            elif c == ord("?") and at(p - 1) == ord("<"):
                br, state = 0, 2
        elif state == 2:
            if c == ord("(") and lc not in (ord('"'), ord("'")):
                lc, br = c, br + 1
            elif c == ord(")") and lc not in (ord('"'), ord("'")):
                lc, br = c, br - 1
            elif c == ord(">"):
                if depth:
                    depth -= 1
                elif not in_q and not br and lc != ord('"') and at(p - 1) == ord("?"):
                    in_q = state = 0
            elif c in (ord('"'), ord("'")):
                if at(p - 1) != ord("\\"):
                    if lc == c:
                        lc = 0
                    elif lc != ord("\\"):
                        lc = c
                    if p != 0 and (not in_q or c == in_q):
                        in_q = 0 if in_q else c
            elif c in (ord("l"), ord("L")) and p > 4 and raw[p - 4:p].lower() == b"<?xm":
                state, is_xml = 1, True
        elif state == 3:
            if c == ord(">"):
                if depth:
                    depth -= 1
                elif not in_q:
                    in_q = state = 0
            elif c in (ord('"'), ord("'")):
                if p != 0 and at(p - 1) != ord("\\") and (not in_q or c == in_q):
                    in_q = 0 if in_q else c
            elif c == ord("-") and raw[p - 2:p] == b"!-":
                state = 4
            elif c in (ord("e"), ord("E")) and p > 6 and raw[p - 6:p].lower() == b"doctyp":
                state = 1
        else:  # state 4: inside <!-- -->
            if c == ord(">") and not in_q and raw[p - 2:p] == b"--":
                in_q = state = 0
        p += 1
    return out.decode(errors="replace")


def _wordwrap(text: bytes, width: int, brk: bytes, cut: bool) -> bytes:
    """PHP's `wordwrap` for a multi-byte break or a forced cut, on bytes:
    breaks at the last ASCII space of a line, or (with `cut`) inside a word
    at exactly `width` bytes, whatever character that splits."""
    out = bytearray()
    laststart = lastspace = 0
    current = 0
    length = len(text)
    while current < length:
        char = text[current]
        if (char == brk[0] and current + len(brk) < length
                and text[current:current + len(brk)] == brk):
            out += text[laststart:current + len(brk)]
            current += len(brk) - 1
            laststart = lastspace = current + 1
        elif char == ord(" "):
            if current - laststart >= width:
                out += text[laststart:current] + brk
                laststart = current + 1
            lastspace = current
        elif current - laststart >= width and cut and laststart >= lastspace:
            out += text[laststart:current] + brk
            laststart = lastspace = current
        elif current - laststart >= width and laststart < lastspace:
            out += text[laststart:lastspace] + brk
            laststart = lastspace = lastspace + 1
        current += 1
    if laststart != current:
        out += text[laststart:current]
    return bytes(out)


def _cutstr_api(text: str) -> bytes:
    """ZENLIX's `cutstr_api($text, 150)`: the first `<br>`-separated line of
    `wordwrap($text, 150, '<br>', true)`, as bytes (possibly not UTF-8)."""
    return _wordwrap(text.encode(), LIST_TEXT_BYTES, b"<br>", True).split(b"<br>", 1)[0]


def _invalid_utf8(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return True
    return False


def _nameshort(name: str) -> str:
    """ZENLIX's `nameshort`: "Surname Name Patronymic" → "Surname N.P."."""
    return re.sub(r"(\w+) (\w)\w+ (\w)\w+", r"\1 \2.\3.", name)
