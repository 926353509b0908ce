"""A fake of Plusofon's support-ticket REST API (providers/plusofon.md), served
over real HTTP on 127.0.0.1.

Faithful to the page's quirks:

* every request needs the `Client` header and (but `api/v1/login`) a Bearer
  token; a refused token answers 401 `{"message", "code"}`;
* `GET api/v1/ticket` takes `state` as a JSON body on a GET (or in the query
  string): `"true"` open, `"false"` closed, anything else
  `{"message": "Undefined index: <value>", "code": 400}`;
* the list is XML turned into JSON: strings everywhere, empty elements as
  `[]`, one object under `ticket` when there is one ticket, a list when there
  are several, `{}` when there are none;
* an unknown ticket answers 500 with a raw upstream HTTP dump ending in
  "Ticket not Found";
* missing required fields answer 400 "The <field> field is required".

Where the page is silent the fake chooses, and the README records it:
`answer` needs `text`; a customer's answer reopens a closed ticket (as the
helpdesk behind Plusofon does); `replies` counts the posts after the opening
one; attachments are listed as `{"id", "filename", "size"}`.

Tests act as Plusofon's support with `support_answers`, `close` and
`reopen`, seed tickets in bulk with `seed_ticket`, inject faults with
`fail_next` and `expire_tokens`, and count requests with `count`.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from aiohttp import web

JsonDict = dict[str, Any]

CLIENT_CODE = "10553"
ACCOUNT_USER_ID = "9740"
SUPPORT_AUTHOR = {"id": "17", "name": "Оператор"}
MSK = timezone(timedelta(hours=3))
NOT_FOUND_DUMP = (
    "HTTP/1.1 404 Not Found\r\nServer: nginx\r\nDate: Tue, 31 Aug 2021 08:31:18 GMT\r\n"
    "Content-Type: text/xml;charset=UTF-8\r\nTransfer-Encoding: chunked\r\n"
    "Connection: keep-alive\r\nVary: Accept-Encoding\r\nX-Frame-Options: SAMEORIGIN\r\n"
    "X-XSS-Protection: 1\r\nX-Content-Type-Options: nosniff\r\n\r\nTicket not Found"
)


@dataclass
class FakePost:
    id: int
    moment: float
    text: str
    author: JsonDict
    attachments: list[JsonDict] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)  # file name -> bytes


@dataclass
class FakeTicket:
    id: int
    subject: str
    created: float
    activity: float
    open: bool = True
    unread: bool = False
    posts: list[FakePost] = field(default_factory=list)
    last_staff_reply: float = 0.0
    last_user_reply: float = 0.0

    def post_texts(self) -> list[str]:
        return [post.text for post in self.posts]


@dataclass
class _Fault:
    method: str
    path_prefix: str
    status: int
    message: str
    times: int
    after: bool  # the request is carried out, then the answer is lost to the error


class FakePlusofon:
    def __init__(
        self,
        *,
        email: str = "owner@example.com",
        password: str = "correct horse battery staple",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.email = email
        self.password = password
        self.clock = clock
        self.tickets: dict[int, FakeTicket] = {}
        self.requests: list[tuple[str, str]] = []
        self.response_bytes = 0  # bodies served, for the poll-cost bench
        self.logins = 0
        self._tokens: set[str] = set()
        self._token_numbers = itertools.count(1)
        self._ticket_ids = itertools.count(22525)
        self._post_ids = itertools.count(43807)
        self._attachment_ids = itertools.count(900)
        self._faults: list[_Fault] = []
        self.unreadable_posts: set[int] = set()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._gate], client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/v1/login", self._login)
        app.router.add_get("/api/v1/ticket", self._list)
        app.router.add_post("/api/v1/ticket", self._create)
        app.router.add_post("/api/v1/ticket/attachment", self._attachment)
        app.router.add_get("/api/v1/ticket/{ticket_id}", self._ticket)
        app.router.add_put("/api/v1/ticket/answer/{ticket_id}", self._answer)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakePlusofon:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def env(self, *, token: bool = False, **extra: str) -> dict[str, str]:
        """Settings for the bridge: the account's e-mail and password, or a
        ready token (`token=True`)."""
        values = {"PLUSOFON_BASE_URL": self.base_url}
        if token:
            values["PLUSOFON_TOKEN"] = self.issue_token()
        else:
            values |= {"PLUSOFON_EMAIL": self.email, "PLUSOFON_PASSWORD": self.password}
        return values | extra

    # -- acting as Plusofon -------------------------------------------------------

    def issue_token(self) -> str:
        token = f"plusofon-token-{next(self._token_numbers)}-{id(self):x}"
        self._tokens.add(token)
        return token

    def expire_tokens(self) -> None:
        """Every token issued so far is refused from now on (401)."""
        self._tokens.clear()

    def fail_next(self, method: str, path_prefix: str, status: int = 500,
                  message: str = "Internal Server Error", times: int = 1,
                  after: bool = False) -> None:
        """The next `times` requests matching answer `{"message", "code": status}`;
        with `after`, each is carried out first (the answer is what gets lost)."""
        self._faults.append(_Fault(method.upper(), path_prefix.lstrip("/"), status, message,
                                   times, after))

    def count(self, method: str | None = None, path_prefix: str = "") -> int:
        prefix = path_prefix.lstrip("/")
        return sum(1 for m, path in self.requests
                   if (method is None or m == method.upper()) and path.startswith(prefix))

    def seed_ticket(self, subject: str, text: str = "", *, open_: bool = True) -> int:
        """A ticket of the account, written without HTTP (benchmarks, setup)."""
        now = self.clock()
        ticket = FakeTicket(next(self._ticket_ids), subject, created=now, activity=now,
                            open=open_, last_user_reply=now)
        ticket.posts.append(FakePost(next(self._post_ids), now, text, self._account_author()))
        self.tickets[ticket.id] = ticket
        return ticket.id

    def support_answers(self, ticket_id: int | str, text: str,
                        files: dict[str, bytes] | None = None) -> int:
        ticket = self.tickets[int(ticket_id)]
        now = self.clock()
        post = FakePost(next(self._post_ids), now, text, dict(SUPPORT_AUTHOR))
        for name, data in (files or {}).items():
            self._attach(post, name, data)
        ticket.posts.append(post)
        ticket.activity = ticket.last_staff_reply = now
        ticket.unread = True
        return post.id

    def make_unreadable(self, post_id: int) -> None:
        """Serve that post in a shape no client can read."""
        self.unreadable_posts.add(post_id)

    def close(self, ticket_id: int | str) -> None:
        self.tickets[int(ticket_id)].open = False

    def reopen(self, ticket_id: int | str) -> None:
        self.tickets[int(ticket_id)].open = True

    def ticket_by_subject(self, subject: str) -> FakeTicket | None:
        return next((t for t in self.tickets.values() if t.subject == subject), None)

    # -- the API ---------------------------------------------------------------------

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path.lstrip("/")
        self.requests.append((request.method, path))
        fault = next((f for f in self._faults if f.method == request.method
                      and path.startswith(f.path_prefix)), None)
        if fault is not None:
            fault.times -= 1
            if fault.times <= 0:
                self._faults.remove(fault)
            if fault.after:
                await handler(request)
            return _error(fault.message, fault.status)
        if request.headers.get("Client") != CLIENT_CODE:
            return _error("The Client header is required", 400)
        if path != "api/v1/login":
            auth = request.headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in self._tokens:
                return _error("Unauthenticated.", 401)
        response: web.StreamResponse = await handler(request)
        if isinstance(response, web.Response) and isinstance(response.body, bytes):
            self.response_bytes += len(response.body)
        return response

    async def _login(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        if body.get("email") != self.email or body.get("password") != self.password:
            return _error("Invalid credentials", 401)
        self.logins += 1
        return web.json_response({"token": self.issue_token()})

    async def _list(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        state = body.get("state", request.query.get("state"))
        wanted = {"true": True, "false": False}.get(state) if isinstance(state, str) else None
        if wanted is None:
            return _error(f"Undefined index: {state if state is not None else 'state'}", 400)
        rows = [self._summary(t) for t in sorted(self.tickets.values(), key=lambda t: t.id)
                if t.open is wanted]
        if not rows:
            return web.json_response({})
        return web.json_response({"ticket": rows[0] if len(rows) == 1 else rows})

    async def _ticket(self, request: web.Request) -> web.StreamResponse:
        ticket = self._find(request.match_info["ticket_id"])
        if ticket is None:
            return _error(NOT_FOUND_DUMP, 500)
        answer = self._full(ticket)
        ticket.unread = False  # the customer has read it now
        return web.json_response(answer)

    async def _create(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        subject = body.get("subject")
        if not isinstance(subject, str) or not subject.strip():
            return _error("The subject field is required", 400)
        now = self.clock()
        ticket = FakeTicket(next(self._ticket_ids), subject, created=now, activity=now,
                            last_user_reply=now)
        text = body.get("description")
        ticket.posts.append(FakePost(next(self._post_ids), now,
                                     text if isinstance(text, str) else "",
                                     self._account_author()))
        self.tickets[ticket.id] = ticket
        return web.json_response(self._full(ticket), status=201)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        ticket = self._find(request.match_info["ticket_id"])
        if ticket is None:
            return _error(NOT_FOUND_DUMP, 500)
        body = await _json_body(request)
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            return _error("The text field is required", 400)
        now = self.clock()
        ticket.posts.append(FakePost(next(self._post_ids), now, text, self._account_author()))
        ticket.activity = ticket.last_user_reply = now
        ticket.open = True  # a customer's answer reopens a closed ticket
        return web.json_response(self._full(ticket))

    async def _attachment(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        for name in ("ticketId", "ticketPostID", "filename", "contents"):
            if body.get(name) in (None, ""):
                return _error(f"The {name} field is required", 400)
        ticket = self._find(str(body["ticketId"]))
        if ticket is None:
            return _error(NOT_FOUND_DUMP, 500)
        post = next((p for p in ticket.posts if str(p.id) == str(body["ticketPostID"])), None)
        if post is None:
            return web.json_response({"message": "Post not Found"})
        try:
            data = base64.b64decode(str(body["contents"]), validate=True)
        except (binascii.Error, ValueError):
            return _error("The contents must be a valid base64 string", 400)
        self._attach(post, str(body["filename"]), data)
        ticket.activity = self.clock()
        return web.json_response({"success": True})

    # -- shapes ----------------------------------------------------------------------

    def _find(self, raw_id: str) -> FakeTicket | None:
        return self.tickets.get(int(raw_id)) if raw_id.isdigit() else None

    def _account_author(self) -> JsonDict:
        return {"id": ACCOUNT_USER_ID, "name": self.email}

    def _attach(self, post: FakePost, name: str, data: bytes) -> None:
        post.attachments.append({"id": str(next(self._attachment_ids)), "filename": name,
                                 "size": str(len(data))})
        post.files[name] = data

    def _summary(self, ticket: FakeTicket) -> JsonDict:
        last = ticket.posts[-1] if ticket.posts else None
        staff_last = last is not None and last.author.get("id") != ACCOUNT_USER_ID
        return {
            "@attributes": {"id": str(ticket.id), "flagtype": "4"},
            "displayid": str(ticket.id),
            "departmentid": "5",
            "statusid": "1" if ticket.open else "3",
            "priorityid": "2",
            "typeid": "32",
            "userid": ACCOUNT_USER_ID,
            "userorganization": "57599",
            "userorganizationid": "25",
            "ownerstaffid": "0",
            "ownerstaffname": [],
            "fullname": self.email,
            "email": self.email,
            "lastreplier": "Оператор" if staff_last else self.email,
            "subject": ticket.subject,
            "creationtime": str(int(ticket.created)),
            "lastactivity": str(int(ticket.activity)),
            "laststaffreply": str(int(ticket.last_staff_reply)),
            "lastuserreply": str(int(ticket.last_user_reply)),
            "slaplanid": "3",
            "nextreplydue": "0",
            "resolutiondue": "0",
            "replies": str(max(0, len(ticket.posts) - 1)),
            "ipaddress": "10.10.80.124",
            "creator": "2",
            "creationmode": "4",
            "creationtype": "1",
            "isescalated": "0",
            "escalationruleid": "0",
            "templategroupid": "4",
            "tags": [],
            "templategroupname": "Plusofon",
        }

    def _full(self, ticket: FakeTicket) -> JsonDict:
        return {
            "id": str(ticket.id),
            "subject": ticket.subject,
            "date": _local(ticket.created),
            "status": ticket.open,
            "unread_messages": ticket.unread,
            "posts": [
                {"id": str(post.id), "date": _local(post.moment), "text": post.text,
                 # An unreadable post: its author is no object.
                 "author": "?" if post.id in self.unreadable_posts else dict(post.author),
                 "attachments": list(post.attachments)}
                for post in ticket.posts
            ],
        }


def _local(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).astimezone(MSK).strftime("%Y-%m-%d %H:%M:%S")


def _error(message: str, code: int) -> web.Response:
    return web.json_response({"message": message, "code": code}, status=code)


async def _json_body(request: web.Request) -> JsonDict:
    raw = await request.text()  # read on a GET too: the list takes a JSON body
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
