"""A fake of iqstore's public (client-side) and internal (agent-side) APIs
(providers/iqstore.md), served over real HTTP on 127.0.0.1.

Faithful to the page's quirks:

* every method is a POST answered with HTTP 200 and an envelope, errors
  included (`{"OK": false, "Error": {"Code", "Text"}}`): `not_found`,
  `forbidden`, `unauthorized`, `invalid`, `bad_request`,
  `internal_server_error`; only `/files/upload` answers other statuses;
* the public API answers `Result` and `Rels` (Clients, Users, Files), the
  internal one `Data`, `Graph` and `Ping`;
* a client session goes in `Authorization: Client <token>` (or the
  `client-session` cookie); the service account in `Authorization: Bearer`;
* `LocalId` is stored and echoed, never used to drop a repeated send (the
  page does not say iqstore does that); `My` is true for the caller's own
  messages; ids and `EventId` grow across all chats; times are Unix ms;
* `/chats/channel/messages/{channel}` pages back: up to `Limit` messages
  before `MaxId` (the newest without it), oldest first;
* every send answers the chat's latest messages (`Result`).

Where the page is silent the fake chooses, and the README records it:
`/clients/auth {Token}` renews the session of the client a token (even an
expired one) was issued to; a chat message that mirrors a ticket message
carries `TicketMessageId`, and `Rels.TicketMessages` holds `{Id, TicketId}`
for it; a reply through `/api/tickets/create_message` shows in the client's
chat with its `LocalId`.

Tests act as iqstore's agents with `agent_replies` (from a ticket with
`open_ticket`), as its system with `notice`, seed chats without HTTP with
`seed_client`/`seed_message`, inject faults with `fail_next` and
`expire_sessions`, and count requests with `count`.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

JsonDict = dict[str, Any]
PUBLIC = "/public/api/v1"
AGENT_USER = {"Id": 4, "Name": "Мария", "DisplayName": "Мария (поддержка)",
              "Email": "maria@iqstore.example"}
SERVICE_USER = {"Id": 9, "Name": "deskbridge", "DisplayName": "deskbridge",
                "Email": "bot@iqstore.example"}
CHAT_RESULT_SIZE = 20  # messages a send answers with


@dataclass
class FakeClient:
    id: int
    name: str
    credentials: str | None = None
    sessions: set[str] = field(default_factory=set)  # valid now
    issued: set[str] = field(default_factory=set)  # ever issued


@dataclass
class FakeFile:
    id: str
    client_id: int
    name: str
    data: bytes
    content_type: str
    type: str


@dataclass
class _Fault:
    path_suffix: str
    code: str | None
    http_status: int | None
    times: int
    after: bool  # the request is carried out, then the answer is lost to the error


class FakeIqstore:
    def __init__(self, *, channel: str = "support", service_token: str = "svc-3dd194ed5b5f",
                 clock: Callable[[], float] = time.time) -> None:
        self.channel = channel
        self.service_token = service_token
        self.clock = clock
        self.clients: dict[int, FakeClient] = {}
        self.chats: dict[int, list[JsonDict]] = {}  # client id -> its messages, oldest first
        self.files: dict[str, FakeFile] = {}
        self.tickets: dict[int, int] = {}  # iqstore ticket id -> client id
        self.ticket_messages: dict[int, JsonDict] = {}
        self.requests: list[str] = []
        self._client_ids = itertools.count(11)
        self._message_ids = itertools.count(252)
        self._event_ids = itertools.count(1649)
        self._ticket_ids = itertools.count(103)
        self._ticket_message_ids = itertools.count(1632)
        self._faults: list[_Fault] = []
        # Messages served with a `CreatedAt` no client can read.
        self.unreadable: set[int] = set()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeIqstore:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def env(self, *, agent_side: bool = False, **extra: str) -> dict[str, str]:
        values = {"IQSTORE_PUBLIC_BASE_URL": self.base_url, "IQSTORE_CHANNEL": self.channel}
        if agent_side:
            values |= {"IQSTORE_APP_BASE_URL": self.base_url,
                       "IQSTORE_SERVICE_TOKEN": self.service_token}
        return values | extra

    # -- acting as iqstore ----------------------------------------------------------------

    def seed_client(self, name: str) -> tuple[int, str]:
        """A client with a session, made without HTTP; returns (id, token)."""
        client = FakeClient(next(self._client_ids), name)
        self.clients[client.id] = client
        self.chats[client.id] = []
        return client.id, self._new_session(client)

    def seed_message(self, client_id: int, text: str, *, author: str = "client",
                     local_id: int | None = None) -> int:
        return self._add(client_id, author=author, text=text, local_id=local_id)["Id"]

    def open_ticket(self, client_id: int) -> int:
        """An iqstore agent makes a ticket of the client's chat."""
        ticket_id = next(self._ticket_ids)
        self.tickets[ticket_id] = client_id
        return ticket_id

    def agent_replies(self, client_id: int, text: str, *, ticket_id: int | None = None,
                      file: tuple[str, bytes] | None = None) -> int:
        """An iqstore agent answers in the client's chat (from a ticket, when given)."""
        file_id = None
        if file is not None:
            file_id = self._store_file(client_id, file[0], file[1], "application/pdf",
                                       owner_user=True).id
        ticket_message_id = None
        if ticket_id is not None:
            ticket_message_id = self._ticket_message(ticket_id, None, text, AGENT_USER["Id"])
        return self._add(client_id, author="user", text=text, user_id=AGENT_USER["Id"],
                         file_id=file_id, ticket_message_id=ticket_message_id)["Id"]

    def notice(self, client_id: int, text: str = "") -> int:
        return self._add(client_id, author="system", text=text, payload="notice")["Id"]

    def expire_sessions(self, client_id: int | None = None) -> None:
        """Sessions stop working (the tokens stay known to `/clients/auth`)."""
        for client in self.clients.values():
            if client_id is None or client.id == client_id:
                client.sessions.clear()

    def fail_next(self, path_suffix: str, *, code: str | None = "internal_server_error",
                  http_status: int | None = None, times: int = 1, after: bool = False) -> None:
        """The next `times` requests whose path ends with `path_suffix` fail:
        with an `OK: false` envelope of `code`, or with a bare `http_status`;
        with `after`, each is carried out first (the answer is what gets lost)."""
        self._faults.append(_Fault(path_suffix, code, http_status, times, after))

    def count(self, path_part: str = "") -> int:
        return sum(1 for path in self.requests if path_part in path)

    def client_named(self, name: str) -> FakeClient | None:
        return next((c for c in self.clients.values() if c.name.startswith(name)), None)

    def texts(self, client_id: int) -> list[str]:
        return [m["Text"] for m in self.chats.get(client_id, [])]

    # -- dispatch ------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["path"]
        self.requests.append(path)
        fault = next((f for f in self._faults if path.endswith(f.path_suffix)), None)
        if fault is not None:
            fault.times -= 1
            if fault.times <= 0:
                self._faults.remove(fault)
            if fault.after:
                await self._handle(request, path)
            if fault.http_status is not None:
                return web.Response(status=fault.http_status, text="Bad Gateway")
            return _error(fault.code or "internal_server_error", "injected fault")
        return await self._handle(request, path)

    async def _handle(self, request: web.Request, path: str) -> web.StreamResponse:
        if request.method != "POST":
            return _error("bad_request", "only POST is supported")
        if path == f"{PUBLIC}/files/upload":
            return await self._upload(request)
        body = await _json(request)
        if body is None:
            return _error("bad_request", "the body is not JSON")
        if path == "/api/tickets/create_message":
            return self._create_message(request, body)
        routes: dict[str, Callable[[web.Request, Any], web.Response]] = {
            f"{PUBLIC}/clients/signup": self._signup,
            f"{PUBLIC}/clients/integration_auth": self._integration_auth,
            f"{PUBLIC}/clients/auth": self._auth,
            f"{PUBLIC}/clients/me": self._me,
        }
        if path in routes:
            return routes[path](request, body)
        for prefix, handler in ((f"{PUBLIC}/chats/channel/send/", self._send),
                                (f"{PUBLIC}/chats/channel/messages/", self._messages)):
            if path.startswith(prefix):
                if path.removeprefix(prefix) != self.channel:
                    return _error("not_found", "channel not found")
                return handler(request, body)
        return _error("not_found", "method not found")

    # -- public API ------------------------------------------------------------------------

    def _signup(self, request: web.Request, body: Any) -> web.Response:
        name = body.get("Name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name.strip():
            return _error("invalid", "Name is required")
        if body.get("Channel") != self.channel:
            return _error("not_found", "channel not found")
        client_id, token = self.seed_client(name)
        return self._auth_answer(self.clients[client_id], token)

    def _integration_auth(self, request: web.Request, body: Any) -> web.Response:
        credentials = body.get("Credentials") if isinstance(body, dict) else None
        if not isinstance(credentials, str) or not credentials:
            return _error("invalid", "Credentials are required")
        if body.get("Channel") != self.channel:
            return _error("not_found", "channel not found")
        client = next((c for c in self.clients.values() if c.credentials == credentials), None)
        if client is None:
            client_id, _ = self.seed_client(f"Integration {credentials.split(':')[-1]}")
            client = self.clients[client_id]
            client.credentials = credentials
        return self._auth_answer(client, self._new_session(client))

    def _auth(self, request: web.Request, body: Any) -> web.Response:
        token = body.get("Token") if isinstance(body, dict) else None
        client = next((c for c in self.clients.values() if token in c.issued), None)
        if client is None:
            return _error("unauthorized", "unknown token")
        return self._auth_answer(client, self._new_session(client))

    def _me(self, request: web.Request, body: Any) -> web.Response:
        client = self._caller(request)
        if client is None:
            return _error("unauthorized", "authorization required")
        return _ok(self._client_json(client), {"Clients": [self._client_json(client)]})

    def _send(self, request: web.Request, body: Any) -> web.Response:
        client = self._caller(request)
        if client is None:
            return _error("unauthorized", "authorization required")
        local_id, payload = body.get("LocalId"), body.get("Payload")
        text, file_id = body.get("Text") or "", body.get("FileId")
        if not isinstance(local_id, int) or isinstance(local_id, bool):
            return _error("invalid", "LocalId is required")
        if payload == "text" and not str(text).strip():
            return _error("invalid", "Text is required")
        if payload == "file":
            file = self.files.get(str(file_id))
            if file is None or file.client_id != client.id:
                return _error("invalid", "unknown FileId")
        elif payload != "text":
            return _error("invalid", "unknown Payload")
        self._add(client.id, author="client", text=str(text), local_id=local_id,
                  file_id=file_id if payload == "file" else None, payload=payload)
        return self._page(client, self.chats[client.id][-CHAT_RESULT_SIZE:])

    def _messages(self, request: web.Request, body: Any) -> web.Response:
        client = self._caller(request)
        if client is None:
            return _error("unauthorized", "authorization required")
        limit, max_id = body.get("Limit") or 50, body.get("MaxId")
        if not isinstance(limit, int) or not 0 < limit <= 100:
            return _error("invalid", "Limit must be 1..100")
        chat = self.chats[client.id]
        older = [m for m in chat if max_id is None or m["Id"] < max_id]
        return self._page(client, older[-limit:])

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        client = self._caller(request)
        if client is None:
            return _error("unauthorized", "authorization required")
        if not request.content_type.startswith("multipart/"):
            return web.Response(status=400, text="multipart form expected")
        form = await request.post()
        upload = form.get("File")
        if upload is None or isinstance(upload, str):
            return web.Response(status=400, text="File is required")
        data = upload.file.read()
        kind = str(form.get("Type") or "file")
        file = self._store_file(client.id, upload.filename, data,
                                upload.content_type or "application/octet-stream", kind=kind)
        return _ok(self._file_json(file), {})

    # -- internal API ---------------------------------------------------------------------

    def _create_message(self, request: web.Request, body: Any) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.service_token}":
            return _error("unauthorized", "service account token required")
        ticket_id, message = body.get("TicketId"), body.get("Message")
        if not isinstance(message, dict):
            return _error("invalid", "Message is required")
        if ticket_id not in self.tickets:
            return _error("not_found", "ticket not found")
        text = message.get("Text") or ""
        if message.get("Type") != "text" or not str(text).strip():
            return _error("invalid", "Text is required")
        local_id = message.get("LocalId")
        ticket_message_id = self._ticket_message(ticket_id, local_id, str(text),
                                                 SERVICE_USER["Id"])
        # The ticket message shows in the client's chat, as agents' do.
        self._add(self.tickets[ticket_id], author="user", text=str(text), local_id=local_id,
                  user_id=SERVICE_USER["Id"], ticket_message_id=ticket_message_id)
        stored = dict(self.ticket_messages[ticket_message_id], My=True)
        return web.json_response({"OK": True, "Error": None, "Ping": False,
                                  "Data": {"Message": stored},
                                  "Graph": {"Users": [dict(SERVICE_USER)]}})

    # -- state -----------------------------------------------------------------------------

    def _caller(self, request: web.Request) -> FakeClient | None:
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Client ") if auth.startswith("Client ") else (
            request.cookies.get("client-session"))
        return next((c for c in self.clients.values() if token and token in c.sessions), None)

    def _new_session(self, client: FakeClient) -> str:
        token = uuid.uuid4().hex + "." + uuid.uuid4().hex
        client.sessions.add(token)
        client.issued.add(token)
        return token

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _add(self, client_id: int, *, author: str, text: str, local_id: int | None = None,
             user_id: int | None = None, file_id: str | None = None,
             ticket_message_id: int | None = None, payload: str | None = None) -> JsonDict:
        now = self._now_ms()
        message = {
            "Id": next(self._message_ids), "ChatId": client_id + 100,
            "LocalId": local_id if local_id is not None else now,
            "EventId": next(self._event_ids), "TicketMessageId": ticket_message_id,
            "Author": author, "ClientId": client_id if author == "client" else None,
            "UserId": user_id, "Payload": payload or ("file" if file_id else "text"),
            "Text": text, "FileId": file_id, "Received": False, "Read": False,
            "Pushed": False, "CreatedAt": now, "ReceivedAt": None, "ReadAt": None,
        }
        self.chats.setdefault(client_id, []).append(message)
        return message

    def _ticket_message(self, ticket_id: int, local_id: int | None, text: str,
                        user_id: int) -> int:
        now = self._now_ms()
        message_id = next(self._ticket_message_ids)
        self.ticket_messages[message_id] = {
            "Id": message_id, "UID": uuid.uuid4().hex, "TicketId": ticket_id,
            "LocalId": local_id if local_id is not None else now, "Author": "user",
            "ClientId": None, "UserId": user_id, "Type": "text", "Text": text,
            "Received": False, "Read": False, "CreatedAt": now, "UpdatedAt": now,
            "ReceivedAt": None, "ReadAt": None,
        }
        return message_id

    def _store_file(self, client_id: int, name: str, data: bytes, content_type: str, *,
                    kind: str = "file", owner_user: bool = False) -> FakeFile:
        extension = name.rsplit(".", 1)[-1] if "." in name else "bin"
        file = FakeFile(f"{uuid.uuid4()}.{extension}", client_id, name, data, content_type,
                        kind)
        self.files[file.id] = file
        return file

    def _page(self, client: FakeClient, messages: list[JsonDict]) -> web.Response:
        result = [dict(m, My=m["Author"] == "client" and m["ClientId"] == client.id,
                       **({"CreatedAt": "yesterday"} if m["Id"] in self.unreadable else {}))
                  for m in messages]
        user_ids = {m["UserId"] for m in messages if m["UserId"] is not None}
        users = [dict(u) for u in (AGENT_USER, SERVICE_USER) if u["Id"] in user_ids]
        files = [self._file_json(self.files[m["FileId"]]) for m in messages
                 if m["FileId"] in self.files]
        links = [{"Id": tm["Id"], "TicketId": tm["TicketId"]} for m in messages
                 if (tm := self.ticket_messages.get(m["TicketMessageId"] or -1))]
        rels: JsonDict = {"Clients": [self._client_json(client)], "Users": users,
                          "Files": files}
        if links:
            rels["TicketMessages"] = links
        return _ok(result, rels)

    def _client_json(self, client: FakeClient) -> JsonDict:
        return {"Id": client.id, "ProjectId": 1, "CompanyId": 2, "Type": "crm",
                "Name": client.name, "Online": True, "CustomerId": None, "ChannelId": None,
                "TelegramId": None, "FacebookId": None, "VKId": None,
                "TotalTickets": sum(1 for c in self.tickets.values() if c == client.id),
                "TotalOpenTickets": 0, "CreatedAt": 0, "UpdatedAt": 0, "SeenAt": 0,
                "MessagedAt": None, "IntegrationId": client.credentials}

    def _file_json(self, file: FakeFile) -> JsonDict:
        return {"Id": file.id, "Type": file.type, "Owner": "client",
                "OwnerClientId": file.client_id, "ClientId": None, "UserId": None,
                "Name": file.name, "Path": f"clients/{file.client_id}/{file.id}",
                "Size": len(file.data), "ImageWidth": None, "ImageHeight": None,
                "ContentType": file.content_type, "CreatedAt": self._now_ms()}

    def _auth_answer(self, client: FakeClient, token: str) -> web.Response:
        session = {"Id": len(client.issued), "ClientId": client.id, "Token": token,
                   "CreatedAt": self._now_ms()}
        return _ok({"Client": self._client_json(client), "Session": session},
                   {"Clients": [self._client_json(client)]})


def _ok(result: Any, rels: JsonDict) -> web.Response:
    return web.json_response({"OK": True, "Error": None, "Result": result, "Rels": rels})


def _error(code: str, text: str) -> web.Response:
    # Always 200: the envelope carries the failure (providers/iqstore.md).
    return web.json_response({"OK": False, "Error": {"Code": code, "Text": text},
                              "Result": None})


async def _json(request: web.Request) -> Any:
    raw = await request.text()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return None
