"""A fake Omnidesk REST API on loopback, written from providers/omnidesk.md and
the seed (../shared/seeds/004_66a3ee0b836e2e53.txt).

Faithful to the document where the bridge depends on it:

* `/api/<URI>` paths; HTTP Basic `staff_email:api_key`: a wrong key is
  401, a wrong (or inactive) staff e-mail 403.
* Lists as an object keyed by position plus `total_count`; `page` (1-based)
  and `limit` (1..100, default 100); messages `order` asc (default) or desc,
  and without page/limit the *last* 100. As third-party clients of the real
  API met it (issue 13): an empty page is `{"case": []}` without
  `total_count`; cases carry `closed_at`, `last_response_at`,
  `parent_case_id`, `recipient_cc` and `closing_speed` ("-" until closed);
  messages carry `sent_at` (null unless delayed) and have no `content_html`
  when there is none.
* RFC 2822 dates in a +0300 zone; time filters taking an RFC 2822 string or
  a Unix timestamp; `from_updated_time`/`to_updated_time` inclusive;
  `sort=updated_at_asc|updated_at_desc|created_at_asc|created_at_desc`.
* JSON bodies (`{"case": {...}}`, `{"message": {...}}`) and multipart bodies
  with bracketed names (`case[subject]`, `message[attachments][0]`).
* Errors as `{"error": "<code>"}` (`case_not_found` with 404 ...).
* The budget in headers: `api_calls_left` on every answer, decremented per
  request in a fixed window (an hour, or a minute with `rate_limit_per_minute`
  and, when exceeded, `retry_after`); exhaustion answered the newer way (429)
  or the older way (403 with the body `rate limit exceeded`).
* Custom channels (`user_custom_id` + `channel`), Telegram identities
  (`user_telegram_data`), staff, groups, users, knowledge-base articles.

Simplified or left out: no automation (a reply never changes a case's status:
the document does not describe it), no merged cases, labels, custom fields,
companies, stats or webhooks; attachments are served without credentials at
`/files/<id>/<name>`; every request costs one call ("light" requests too).

Test helpers act as an Omnidesk agent (`staff_replies`, `staff_adds_note`,
`set_status`, `assign`...), as the customer's other channels
(`user_replies`), inject faults (`fail_next`, `delay_next`, `exhaust`,
`make_unreadable` for a record no client can parse), fill
the store directly for benchmarks (`seed_cases`), and count requests by path
(`requests`, `count`).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import quote

from aiohttp import web
from multidict import MultiDictProxy

JsonDict = dict[str, Any]
MOSCOW = timezone(timedelta(hours=3))
MAX_LIMIT = 100
STATUSES = ("open", "waiting", "closed")
PRIORITIES = ("low", "normal", "high", "critical")
RATE_LIMIT_TEXT = "rate limit exceeded"
_BRACKETED = re.compile(r"^(\w+)\[(\w+)\](?:\[(\w+)\])?$")


class FakeClock:
    """A settable clock for the fake and the bridge under test."""

    def __init__(self, start: float | None = None) -> None:
        self.now = float(int(time.time()) if start is None else start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ApiError(Exception):
    def __init__(self, status: int, code: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code


@dataclass(slots=True)
class Fault:
    status: int | None  # None: only a delay
    path: str | None  # a substring of the request path, or any
    method: str | None
    times: int
    delay: float = 0.0
    body: str | None = None
    retry_after: int | None = None


@dataclass(slots=True)
class StoredFile:
    file_id: int
    file_name: str
    mime_type: str
    data: bytes


@dataclass(slots=True)
class RateLimit:
    limit: int
    window: float  # seconds: 3600 (hourly accounts) or 60 (per minute)
    style: Literal["429", "403"] = "429"
    used: int = 0
    window_start: float = 0.0


@dataclass(slots=True)
class Store:
    staff: dict[int, JsonDict] = field(default_factory=dict)
    groups: dict[int, JsonDict] = field(default_factory=dict)
    users: dict[int, JsonDict] = field(default_factory=dict)
    cases: dict[int, JsonDict] = field(default_factory=dict)
    messages: dict[int, list[JsonDict]] = field(default_factory=dict)  # by case id
    articles: dict[int, JsonDict] = field(default_factory=dict)
    channels: dict[str, JsonDict] = field(default_factory=dict)
    files: dict[int, StoredFile] = field(default_factory=dict)


class FakeOmnidesk:
    """Omnidesk for one account. `clock` drives every date it writes and its
    rate-limit windows (`FakeClock` makes both controllable)."""

    def __init__(
        self,
        *,
        staff_email: str = "api@support.example",
        api_key: str = "od-test-key-0123456789",
        clock: Callable[[], float] = time.time,
        calls_per_hour: int | None = 100_000,
    ) -> None:
        self.staff_email = staff_email
        self.api_key = api_key
        self.clock = clock
        self.store = Store()
        self.rate: RateLimit | None = (
            RateLimit(calls_per_hour, 3600.0) if calls_per_hour is not None else None)
        self.requests: Counter[str] = Counter()  # "GET /api/cases.json" → count
        self.request_log: list[tuple[str, str, dict[str, str]]] = []
        self.rejected_auth = 0
        self.rate_limited = 0  # requests refused for the budget
        self._faults: list[Fault] = []
        self._case_ids = itertools.count(1001)
        self._message_ids = itertools.count(5001)
        self._ids = itertools.count(101)  # users, staff, groups, articles, files
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.api_staff_id = self.add_staff(staff_email, "Olga API")

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_get("/files/{file_id:\\d+}/{name}", self._serve_file)
        routes: list[tuple[str, str, Callable[..., Any]]] = [
            ("GET", "/api/cases.json", self._list_cases),
            ("POST", "/api/cases.json", self._create_case),
            ("GET", "/api/cases/{case_id:\\d+}.json", self._get_case),
            ("PUT", "/api/cases/{case_id:\\d+}.json", self._update_case),
            ("GET", "/api/cases/{case_id:\\d+}/messages.json", self._list_messages),
            ("POST", "/api/cases/{case_id:\\d+}/messages.json", self._add_message),
            ("POST", "/api/cases/{case_id:\\d+}/note.json", self._add_note),
            ("GET", "/api/staff.json", self._list_staff),
            ("GET", "/api/staff/{staff_id:\\d+}.json", self._get_staff),
            ("GET", "/api/groups.json", self._list_groups),
            ("GET", "/api/users.json", self._list_users),
            ("GET", "/api/users/{user_id:\\d+}.json", self._get_user),
            ("GET", "/api/kb_article.json", self._list_articles),
            ("GET", "/api/custom_channels.json", self._list_channels),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, self._api(handler))
        app.router.add_route("*", "/api/{tail:.*}", self._api(self._no_route))
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

    async def __aenter__(self) -> FakeOmnidesk:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def env(self, *, channel: str | None = None, api_key: str | None = None,
            staff_email: str | None = None) -> dict[str, str]:
        """The OMNIDESK_* settings that reach this fake."""
        values = {
            "OMNIDESK_BASE_URL": self.base_url,
            "OMNIDESK_STAFF_EMAIL": self.staff_email if staff_email is None else staff_email,
            "OMNIDESK_API_KEY": self.api_key if api_key is None else api_key,
        }
        if channel:
            values["OMNIDESK_CHANNEL"] = channel
        return values

    # -- building the account ----------------------------------------------------

    def add_staff(self, email: str, full_name: str, *, active: bool = True) -> int:
        staff_id = next(self._ids)
        self.store.staff[staff_id] = {
            "staff_id": staff_id, "staff_email": email, "staff_full_name": full_name,
            "staff_signature": "", "thumbnail": "", "active": active, "status": "online",
            "created_at": self._date(), "updated_at": self._date(),
        }
        return staff_id

    def add_group(self, title: str, *, active: bool = True) -> int:
        group_id = next(self._ids)
        self.store.groups[group_id] = {
            "group_id": group_id, "group_title": title, "group_from_name": title,
            "group_signature": "", "active": active,
            "created_at": self._date(), "updated_at": self._date(),
        }
        return group_id

    def add_channel(self, channel_api_key: str, title: str = "Telegram bot", *,
                    active: bool = True) -> None:
        number = int(channel_api_key.removeprefix("cch"))
        self.store.channels[channel_api_key] = {
            "channel_id": number, "channel_api_key": channel_api_key, "title": title,
            "channel_type": "async", "icon": "fa-question-circle", "webhook_url": "",
            "active": active,
        }

    def add_article(self, title: str, content: str, *, access_type: str = "public",
                    active: bool = True, tags: str = "") -> int:
        article_id = next(self._ids)
        self.store.articles[article_id] = {
            "article_id": article_id, "section_id": 10, "article_title": title,
            "article_content": content, "article_tags": tags, "access_type": access_type,
            "active": active, "created_at": self._date(), "updated_at": self._date(),
        }
        return article_id

    def add_user(self, *, full_name: str = "Client", **identity: str) -> int:
        user_id = next(self._ids)
        self.store.users[user_id] = {
            "user_id": user_id, "user_full_name": full_name, "company_name": "",
            "company_position": "", "thumbnail": "", "confirmed": False, "active": True,
            "deleted": False, "created_at": self._date(), "updated_at": self._date(),
            "type": _user_type(identity), "language_id": 1, "custom_fields": {},
            **identity,
        }
        return user_id

    # -- acting in the Omnidesk UI ------------------------------------------------

    def open_case(self, subject: str, content: str, *, user_id: int | None = None,
                  channel: str = "email", at: float | None = None) -> int:
        """A case that arrived by another channel (e-mail...)."""
        if user_id is None:
            user_id = self.add_user(user_email=f"client{next(self._ids)}@mail.example")
        case = self._new_case({"subject": subject}, user_id, channel, at=at)
        self._store_message(case, content=content, user_id=user_id, at=at)
        return int(case["case_id"])

    def staff_replies(self, case_id: int, content: str = "", *, staff_id: int | None = None,
                      html: str = "", files: Iterable[tuple[str, bytes, str]] = (),
                      status: str | None = None) -> JsonDict:
        """A reply typed in Omnidesk; `status` as the UI's "reply and set status"."""
        case = self._case(case_id)
        message = self._store_message(
            case, content=content, content_html=html,
            staff_id=staff_id or self.api_staff_id, files=files)
        if status:
            self._change(case, {"status": status})
        return message

    def staff_adds_note(self, case_id: int, content: str, *,
                        staff_id: int | None = None) -> JsonDict:
        return self._store_message(self._case(case_id), content=content,
                                   staff_id=staff_id or self.api_staff_id, note=True)

    def user_replies(self, case_id: int, content: str) -> JsonDict:
        case = self._case(case_id)
        return self._store_message(case, content=content, user_id=int(case["user_id"]))

    def set_status(self, case_id: int, status: str) -> None:
        self._change(self._case(case_id), {"status": status})

    def close(self, case_id: int) -> None:
        self.set_status(case_id, "closed")

    def assign(self, case_id: int, staff_id: int) -> None:
        self._change(self._case(case_id), {"staff_id": staff_id})

    def set_priority(self, case_id: int, priority: str) -> None:
        self._change(self._case(case_id), {"priority": priority})

    def seed_cases(self, count: int, *, until: float | None = None, spacing: float = 1.0
                   ) -> list[int]:
        """`count` open e-mail cases with one message each, the newest updated
        at `until` (default: 10 s ago), written straight into the store."""
        newest = (self.clock() - 10) if until is None else until
        user_id = self.add_user(user_email="bulk@mail.example")
        ids = []
        for number in range(count):
            at = newest - (count - 1 - number) * spacing
            case = self._new_case({"subject": f"bulk case {number}"}, user_id, "email", at=at)
            self._store_message(case, content=f"bulk message {number}", user_id=user_id, at=at)
            ids.append(int(case["case_id"]))
        return ids

    # -- looking inside -------------------------------------------------------------

    def case(self, case_id: int) -> JsonDict:
        return self._case(case_id)

    def staff_id_of(self, email: str) -> int:
        return next(staff_id for staff_id, staff in self.store.staff.items()
                    if staff["staff_email"] == email)

    def messages_of(self, case_id: int) -> list[JsonDict]:
        return list(self.store.messages.get(case_id, []))

    def file(self, file_id: int) -> StoredFile:
        return self.store.files[file_id]

    def count(self, prefix: str = "") -> int:
        """Requests whose "METHOD /path-template" starts with `prefix`."""
        return sum(n for key, n in self.requests.items() if key.startswith(prefix))

    def reset_counts(self) -> None:
        self.requests.clear()
        self.request_log.clear()

    @property
    def calls_left(self) -> int | None:
        if self.rate is None:
            return None
        self._roll_window(self.rate)
        return max(0, self.rate.limit - self.rate.used)

    # -- faults -----------------------------------------------------------------------

    def fail_next(self, status: int = 500, *, path: str | None = None,
                  method: str | None = None, times: int = 1, body: str | None = None,
                  retry_after: int | None = None) -> None:
        """The next `times` matching requests answer `status` (body: an error
        object, or `body` verbatim) without being applied; a 429 carries
        `retry_after` (default 1 s)."""
        if status == 429 and retry_after is None:
            retry_after = 1
        self._faults.append(Fault(status, path, method, times, body=body,
                                  retry_after=retry_after))

    def make_unreadable(self, *, case_id: int | None = None,
                        message_id: int | None = None) -> None:
        """Serve that case (in lists and on its own) or message with a
        `created_at` no client can parse."""
        if case_id is not None:
            self.store.cases[case_id]["_unreadable"] = True
        if message_id is not None:
            for messages in self.store.messages.values():
                for message in messages:
                    if message["message_id"] == message_id:
                        message["_unreadable"] = True

    def delay_next(self, seconds: float, *, path: str | None = None,
                   method: str | None = None, times: int = 1) -> None:
        """The next matching requests stall `seconds` before being handled
        (a client with a shorter timeout sees a timeout, nothing applied)."""
        self._faults.append(Fault(None, path, method, times, delay=seconds))

    def rate_limit(self, limit: int, *, per: Literal["hour", "minute"] = "hour",
                   style: Literal["429", "403"] = "429") -> None:
        """Set the account's budget: hourly accounts report `api_calls_left`
        only; per-minute ones also `rate_limit_per_minute` and, when
        exceeded, `retry_after`; `style` is how exhaustion is answered."""
        window = 3600.0 if per == "hour" else 60.0
        self.rate = RateLimit(limit, window, style, window_start=self._window_start(window))

    def exhaust(self, *, style: Literal["429", "403"] | None = None) -> None:
        """Spend what is left of the current window."""
        if self.rate is None:
            self.rate = RateLimit(1000, 3600.0)
        self._roll_window(self.rate)
        self.rate.used = self.rate.limit
        if style:
            self.rate.style = style

    # -- the HTTP side ----------------------------------------------------------------

    def _api(self, handler: Callable[[web.Request], Any]) -> Callable[..., Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            refused = self._refusal(request)
            if refused is not None:
                self.rejected_auth += 1
                return refused
            route = request.match_info.route.resource
            template = route.canonical if route is not None else request.path
            self.requests[f"{request.method} {template}"] += 1
            self.request_log.append((request.method, request.path, dict(request.query)))
            fault = self._take_fault(request)
            if fault is not None and fault.delay:
                await asyncio.sleep(fault.delay)
            limited = self._spend_call()
            if limited is not None:
                return limited
            headers = {**self._date_header(), **self._budget_headers()}
            if fault is not None and fault.status is not None:
                if fault.retry_after is not None:
                    headers["retry_after"] = str(fault.retry_after)
                if fault.body is not None:
                    return web.Response(status=fault.status, text=fault.body, headers=headers)
                code = RATE_LIMIT_TEXT if fault.status == 429 else "internal_error"
                return web.json_response({"error": code}, status=fault.status,
                                         headers=headers)
            try:
                status, payload = await handler(request)
            except ApiError as exc:
                return web.json_response({"error": exc.code}, status=exc.status,
                                         headers=headers)
            return web.json_response(payload, status=status, headers=headers)

        return handle

    def _refusal(self, request: web.Request) -> web.Response | None:
        """None for good credentials. A wrong API key is 401; with the right
        key, an e-mail of no active staff member is 403 (as third-party
        clients of the real API see it, issue 13)."""
        header = request.headers.get("Authorization", "")
        email, key = "", ""
        if header.startswith("Basic "):
            try:
                email, _, key = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                email, key = "", ""
        if key != self.api_key:
            return web.json_response({"error": "wrong_api_key"}, status=401,
                                     headers=self._date_header())
        staff = next((s for s in self.store.staff.values() if s["staff_email"] == email), None)
        if staff is None or not staff["active"]:
            return web.Response(status=403, text="Forbidden", headers=self._date_header())
        return None

    def _take_fault(self, request: web.Request) -> Fault | None:
        for fault in self._faults:
            if fault.path is not None and fault.path not in request.path:
                continue
            if fault.method is not None and fault.method != request.method:
                continue
            fault.times -= 1
            if fault.times <= 0:
                self._faults.remove(fault)
            return fault
        return None

    def _spend_call(self) -> web.Response | None:
        rate = self.rate
        if rate is None:
            return None
        self._roll_window(rate)
        if rate.used < rate.limit:
            rate.used += 1
            return None
        self.rate_limited += 1
        headers = {**self._date_header(), **self._budget_headers()}
        if rate.style == "403":
            return web.Response(status=403, text=RATE_LIMIT_TEXT, headers=headers)
        retry_after = max(1, int(rate.window_start + rate.window - self.clock()) + 1)
        headers["retry_after"] = str(retry_after)
        return web.json_response({"error": RATE_LIMIT_TEXT}, status=429, headers=headers)

    def _roll_window(self, rate: RateLimit) -> None:
        start = self._window_start(rate.window)
        if start != rate.window_start:
            rate.window_start, rate.used = start, 0

    def _window_start(self, window: float) -> float:
        return (self.clock() // window) * window

    def _budget_headers(self) -> dict[str, str]:
        rate = self.rate
        if rate is None:
            return {}
        headers = {"api_calls_left": str(max(0, rate.limit - rate.used))}
        if rate.window < 3600:
            headers["rate_limit_per_minute"] = str(rate.limit)
        return headers

    def _date_header(self) -> dict[str, str]:
        return {"Date": format_datetime(datetime.fromtimestamp(self.clock(), UTC),
                                        usegmt=True)}

    async def _serve_file(self, request: web.Request) -> web.Response:
        stored = self.store.files.get(int(request.match_info["file_id"]))
        if stored is None:
            raise web.HTTPNotFound()
        return web.Response(body=stored.data, content_type=stored.mime_type)

    async def _no_route(self, request: web.Request) -> tuple[int, JsonDict]:
        raise ApiError(404, "method_not_found")

    # -- cases ---------------------------------------------------------------------------

    async def _list_cases(self, request: web.Request) -> tuple[int, JsonDict]:
        query = request.query
        cases = list(self.store.cases.values())
        bounds = (("from_updated_time", "_updated", 1), ("to_updated_time", "_updated", -1),
                  ("from_time", "_created", 1), ("to_time", "_created", -1))
        for name, stamp, sign in bounds:  # inclusive at both ends
            if name in query:
                moment = _moment(query[name])
                cases = [c for c in cases if (c[stamp] - moment) * sign >= 0]
        for name in ("status", "priority", "channel"):
            if name in query:
                cases = [c for c in cases if c[name] == query[name]]
        for name in ("user_id", "staff_id", "group_id"):
            if name in query:
                cases = [c for c in cases if c[name] == _integer(query[name], name)]
        sort = query.get("sort", "created_at_desc")
        orders = {"updated_at": "_updated", "created_at": "_created"}
        field_name, _, order = sort.rpartition("_")
        if field_name not in orders or order not in ("asc", "desc"):
            raise ApiError(400, "wrong_sort")
        key = orders[field_name]
        cases.sort(key=lambda c: (c[key], c["case_id"]), reverse=order == "desc")
        return 200, _listing("case", [_public(c) for c in cases], query)

    async def _create_case(self, request: web.Request) -> tuple[int, JsonDict]:
        fields, files = await _envelope(request, "case")
        subject = str(fields.get("subject", "")).strip()
        content = str(fields.get("content") or fields.get("content_html") or "")
        if not subject:
            raise ApiError(400, "empty_subject")
        if not content.strip():
            raise ApiError(400, "empty_content")
        channel = str(fields.get("channel") or "")
        user_id = self._user_for(fields, channel)
        group_id = _integer(fields.get("group_id", 0), "group_id")
        if group_id and not self.store.groups.get(group_id, {}).get("active"):
            raise ApiError(400, "wrong_group_id")
        for name, allowed in (("status", STATUSES), ("priority", PRIORITIES)):
            if name in fields and fields[name] not in allowed:
                raise ApiError(400, f"wrong_{name}")
        kind = channel or ("telegram" if fields.get("user_telegram_data") else "email")
        case = self._new_case(fields, user_id, kind)
        self._store_message(case, content=str(fields.get("content", "")),
                            content_html=str(fields.get("content_html", "")),
                            user_id=user_id, files=files)
        return 201, {"case": _public(case)}

    async def _get_case(self, request: web.Request) -> tuple[int, JsonDict]:
        return 200, {"case": _public(self._case(int(request.match_info["case_id"])))}

    async def _update_case(self, request: web.Request) -> tuple[int, JsonDict]:
        case = self._case(int(request.match_info["case_id"]))
        fields, _ = await _envelope(request, "case")
        changes: JsonDict = {}
        for name, allowed in (("status", STATUSES), ("priority", PRIORITIES)):
            if name in fields:
                if fields[name] not in allowed:
                    raise ApiError(400, f"wrong_{name}")
                changes[name] = fields[name]
        if "staff_id" in fields:
            staff_id = _integer(fields["staff_id"], "staff_id")
            if staff_id and not self.store.staff.get(staff_id, {}).get("active"):
                raise ApiError(400, "wrong_staff_id")  # must exist and be active
            changes["staff_id"] = staff_id
        if "group_id" in fields:
            group_id = _integer(fields["group_id"], "group_id")
            if not self.store.groups.get(group_id, {}).get("active"):
                raise ApiError(400, "wrong_group_id")
            changes["group_id"] = group_id
        if "subject" in fields:
            changes["subject"] = str(fields["subject"])
        self._change(case, changes)
        return 200, {"case": _public(case)}

    # -- messages --------------------------------------------------------------------------

    async def _list_messages(self, request: web.Request) -> tuple[int, JsonDict]:
        case = self._case(int(request.match_info["case_id"]))
        query = request.query
        order = query.get("order", "asc")
        if order not in ("asc", "desc"):
            raise ApiError(400, "wrong_order")
        messages = list(self.store.messages.get(int(case["case_id"]), []))
        if order == "desc":
            messages.reverse()
        if "page" not in query and "limit" not in query:
            # Without page and limit: the last 100 (in the order asked for).
            messages = messages[:MAX_LIMIT] if order == "desc" else messages[-MAX_LIMIT:]
            return 200, _listing("message", [_public(m) for m in messages], {"limit": "100"})
        return 200, _listing("message", [_public(m) for m in messages], query)

    async def _add_message(self, request: web.Request) -> tuple[int, JsonDict]:
        case = self._case(int(request.match_info["case_id"]))
        fields, files = await _envelope(request, "message")
        content, html = str(fields.get("content", "")), str(fields.get("content_html", ""))
        if not (content.strip() or html.strip()):
            raise ApiError(400, "empty_content")
        user_id = _integer(fields.get("user_id", 0), "user_id")
        if user_id:
            if user_id not in self.store.users:
                raise ApiError(400, "wrong_user_id")
            message = self._store_message(case, content=content, content_html=html,
                                          user_id=user_id, files=files)
        else:
            staff_id = _integer(fields.get("staff_id", 0), "staff_id") or self.api_staff_id
            if not self.store.staff.get(staff_id, {}).get("active"):
                raise ApiError(400, "wrong_staff_id")
            message = self._store_message(case, content=content, content_html=html,
                                          staff_id=staff_id, files=files)
        return 201, {"message": _public(message)}

    async def _add_note(self, request: web.Request) -> tuple[int, JsonDict]:
        case = self._case(int(request.match_info["case_id"]))
        fields, files = await _envelope(request, "message")
        content, html = str(fields.get("content", "")), str(fields.get("content_html", ""))
        if not (content.strip() or html.strip()):
            raise ApiError(400, "empty_content")
        # note.json takes no author: the API key's staff member writes it.
        message = self._store_message(case, content=content, content_html=html,
                                      staff_id=self.api_staff_id, note=True, files=files)
        return 201, {"message": _public(message)}

    # -- people, groups, knowledge base ---------------------------------------------

    async def _list_staff(self, request: web.Request) -> tuple[int, JsonDict]:
        return 200, _listing("staff", list(self.store.staff.values()), request.query)

    async def _get_staff(self, request: web.Request) -> tuple[int, JsonDict]:
        staff = self.store.staff.get(int(request.match_info["staff_id"]))
        if staff is None:
            raise ApiError(404, "staff_not_found")
        return 200, {"staff": staff}

    async def _list_groups(self, request: web.Request) -> tuple[int, JsonDict]:
        return 200, _listing("group", list(self.store.groups.values()), request.query)

    async def _list_users(self, request: web.Request) -> tuple[int, JsonDict]:
        users = list(self.store.users.values())
        for name in ("user_email", "user_phone"):
            if name in request.query:
                users = [u for u in users if _search(str(u.get(name, "")), request.query[name])]
        return 200, _listing("user", users, request.query)

    async def _get_user(self, request: web.Request) -> tuple[int, JsonDict]:
        user = self.store.users.get(int(request.match_info["user_id"]))
        if user is None:
            raise ApiError(404, "user_not_found")
        return 200, {"user": user}

    async def _list_articles(self, request: web.Request) -> tuple[int, JsonDict]:
        articles = list(self.store.articles.values())
        search = request.query.get("search")
        if search is not None:
            if len(search) < 3:
                raise ApiError(400, "search_too_short")
            articles = [a for a in articles if any(
                _search(str(a[name]), search)
                for name in ("article_title", "article_content", "article_tags"))]
        return 200, _listing("kb_article", articles, request.query)

    async def _list_channels(self, request: web.Request) -> tuple[int, JsonDict]:
        return 200, _listing("custom_channel", list(self.store.channels.values()),
                             request.query)

    # -- the store -------------------------------------------------------------------

    def _case(self, case_id: int) -> JsonDict:
        case = self.store.cases.get(case_id)
        if case is None:
            raise ApiError(404, "case_not_found")
        return case

    def _user_for(self, fields: Mapping[str, Any], channel: str) -> int:
        """Find or create the case's user by the identity fields."""
        full_name = str(fields.get("user_full_name") or "Client")
        if fields.get("user_custom_id"):
            if not channel or not self.store.channels.get(channel, {}).get("active"):
                raise ApiError(400, "wrong_channel")
            identity = {"user_custom_id": str(fields["user_custom_id"]),
                        "user_custom_channel": channel}
        elif channel:
            raise ApiError(400, "user_custom_id_required")
        elif fields.get("user_telegram_data"):
            identity = {"telegram_data": str(fields["user_telegram_data"])}
        elif fields.get("user_email"):
            email = str(fields["user_email"])
            if "@" not in email:
                raise ApiError(400, "wrong_email")
            identity = {"user_email": email}
        elif fields.get("user_phone"):
            identity = {"user_phone": str(fields["user_phone"])}
        else:
            raise ApiError(400, "user_identity_required")
        for user in self.store.users.values():
            if all(user.get(name) == value for name, value in identity.items()):
                return int(user["user_id"])
        return self.add_user(full_name=full_name, **identity)

    def _new_case(self, fields: Mapping[str, Any], user_id: int, channel: str, *,
                  at: float | None = None) -> JsonDict:
        case_id = next(self._case_ids)
        moment = self.clock() if at is None else at
        case = {
            "case_id": case_id,
            "case_number": f"{(case_id * 7) % 900 + 100}-{245000 + case_id}",
            "subject": str(fields.get("subject", "")),
            "user_id": user_id,
            "staff_id": _integer(fields.get("staff_id", 0), "staff_id"),
            "group_id": _integer(fields.get("group_id", 0), "group_id"),
            "status": str(fields.get("status", "open")),
            "priority": str(fields.get("priority", "normal")),
            "channel": channel,
            "recipient": "",
            "cc_emails": "",
            "bcc_emails": "",
            "deleted": False,
            "spam": False,
            "language_id": 1,
            "custom_fields": {},
            "labels": [],
            "parent_case_id": 0,
            "recipient_cc": [],
            "last_response_at": None,
            "_created": int(moment),
            "_updated": int(moment),
        }
        self.store.cases[case_id] = case
        self.store.messages[case_id] = []
        return case

    def _store_message(self, case: JsonDict, *, content: str = "", content_html: str = "",
                       user_id: int = 0, staff_id: int = 0, note: bool = False,
                       files: Iterable[tuple[str, bytes, str]] = (),
                       at: float | None = None) -> JsonDict:
        moment = int(self.clock() if at is None else at)
        attachments = []
        for name, data, mime in files:
            file_id = next(self._ids)
            self.store.files[file_id] = StoredFile(file_id, name, mime, data)
            attachments.append({"file_id": file_id, "file_name": name, "file_size": len(data),
                                "mime_type": mime,
                                "url": f"{self.base_url}/files/{file_id}/{quote(name)}"})
        message = {
            "message_id": next(self._message_ids),
            "user_id": user_id,
            "staff_id": 0 if user_id else staff_id,
            "content": content,
            **({"content_html": content_html} if content_html else {}),
            "attachments": attachments,
            "note": note,
            "sent_via_rule": False,
            "sent_at": None,
            "_created": moment,
        }
        self.store.messages[int(case["case_id"])].append(message)
        case["_updated"] = max(int(case["_updated"]), moment)
        return message

    def _change(self, case: JsonDict, changes: Mapping[str, Any]) -> None:
        """Apply field changes; `updated_at` moves only if something did."""
        changed = {name: value for name, value in changes.items() if case.get(name) != value}
        if changed:
            case.update(changed)
            case["_updated"] = int(self.clock())

    def _date(self, moment: float | None = None) -> str:
        return _rfc2822(self.clock() if moment is None else moment)


# -- wire format ------------------------------------------------------------------------


def _rfc2822(moment: float) -> str:
    return format_datetime(datetime.fromtimestamp(int(moment), MOSCOW))


def _public(record: JsonDict) -> JsonDict:
    """A stored record as the API shows it: private `_created`/`_updated`
    become RFC 2822 `created_at`/`updated_at`; a closed case says when
    (`closed_at`) and after how many minutes (`closing_speed`, "-" before)."""
    shown = {name: value for name, value in record.items() if not name.startswith("_")}
    if "_created" in record:
        shown["created_at"] = _rfc2822(record["_created"])
    if "_updated" in record:
        shown["updated_at"] = _rfc2822(record["_updated"])
    if "case_id" in record and "message_id" not in record:
        closed = record.get("status") == "closed"
        shown["closed_at"] = _rfc2822(record["_updated"]) if closed else None
        shown["closing_speed"] = (int(record["_updated"] - record["_created"]) // 60
                                  if closed else "-")
    if record.get("_unreadable"):
        shown["created_at"] = "the day before yesterday"  # no client can read this
    return shown


def _listing(key: str, records: list[JsonDict], query: Mapping[str, str]) -> JsonDict:
    """An object keyed by position plus `total_count` (providers/omnidesk.md)."""
    page = _integer(query.get("page", "1"), "page")
    limit = _integer(query.get("limit", str(MAX_LIMIT)), "limit")
    if page < 1:
        raise ApiError(400, "wrong_page")
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, "wrong_limit")
    chosen = records[(page - 1) * limit: page * limit]
    if not chosen:
        return {key: []}  # what the real API answers for an empty page
    body: JsonDict = {str(position): {key: record} for position, record in enumerate(chosen)}
    body["total_count"] = len(records)
    return body


async def _envelope(request: web.Request, envelope: str
                    ) -> tuple[JsonDict, list[tuple[str, bytes, str]]]:
    """`{"case": {...}}` from JSON, or `case[field]`/`case[attachments][N]`
    from multipart; the second item is the uploaded files in order."""
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "wrong_json") from None
        fields = body.get(envelope) if isinstance(body, dict) else None
        if not isinstance(fields, dict):
            raise ApiError(400, f"{envelope}_required")
        return fields, []
    if request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form: MultiDictProxy[Any] = await request.post()
        fields = {}
        files: list[tuple[int, tuple[str, bytes, str]]] = []
        for name, value in form.items():
            match = _BRACKETED.match(name)
            if match is None or match.group(1) != envelope:
                raise ApiError(400, f"wrong_field_{name}")
            field_name, index = match.group(2), match.group(3)
            if field_name == "attachments" and index is not None and isinstance(
                    value, web.FileField):
                files.append((int(index), (value.filename, value.file.read(),
                                           value.content_type)))
            elif index is None and isinstance(value, str):
                fields[field_name] = value
        return fields, [file for _, file in sorted(files)]
    raise ApiError(400, "wrong_content_type")


def _integer(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"wrong_{name}") from None


def _moment(value: str) -> int:
    """A time filter: a Unix timestamp or an RFC 2822 string."""
    if value.strip().isdigit():
        return int(value)
    try:
        return int(parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError):
        raise ApiError(400, "wrong_time") from None


def _search(haystack: str, needle: str) -> bool:
    """Substring search; `^x^` exact, `^x` prefix, `x^` suffix (the document's rule)."""
    haystack, needle = haystack.casefold(), needle.casefold()
    if len(needle) > 1 and needle.startswith("^") and needle.endswith("^"):
        return haystack == needle[1:-1]
    if needle.startswith("^"):
        return haystack.startswith(needle[1:])
    if needle.endswith("^"):
        return haystack.endswith(needle[:-1])
    return needle in haystack


def _user_type(identity: Mapping[str, str]) -> str:
    if "user_custom_id" in identity:
        return "custom"
    if "telegram_data" in identity:
        return "telegram"
    if "user_phone" in identity:
        return "phone"
    return "email"
