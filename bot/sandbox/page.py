"""The demo's web page: both sides of the sandbox Telegram in one browser tab.

Plain HTML, CSS and JavaScript from ``static/`` (no build step, nothing from
the internet), served by aiohttp on loopback. The page learns the world from a
server-sent event stream: a ``state`` snapshot first, then one event per change
the sandbox server reports to its observers (``FakeTelegramServer.observers``).
It acts through a small JSON API that calls the sandbox server's own "a user
does X" helpers, so the bot sees exactly the updates a Telegram client would
cause. With ``--provider`` the fake helpdesk gets a page of its own
(``/helpdesk``), where one answers as the helpdesk's agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from bot.sandbox import world
from bot.sandbox.telegram_server import FakeTelegramServer

if TYPE_CHECKING:
    from bot.sandbox.desks import DemoDesk

log = logging.getLogger("deskbridge.demo")

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD = 20 * 1024 * 1024  # what a bot may download from Telegram (getFile)
ANSWER_TIMEOUT = 5.0  # how long a button press or inline query waits for the bot
KEEP_ALIVE = 15.0
PHOTO_TYPES = {"image/jpeg", "image/png", "image/webp"}  # what Telegram clients send as photos
T = TypeVar("T")
JsonDict = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(Exception):
    pass


def sniff_image(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    return None


def _int(body: JsonDict, name: str, *, required: bool = True) -> int | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise BadRequest(f"{name} is required")
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{name} must be a number") from None


def _need_int(body: JsonDict, name: str) -> int:
    value = _int(body, name)
    assert value is not None
    return value


class SandboxPage:
    """The page's web server, observing one sandbox server."""

    def __init__(self, server: FakeTelegramServer, *, desk: DemoDesk | None = None) -> None:
        self.server = server
        self.desk = desk
        self.status: JsonDict = {"bot": "starting"}
        self.url = ""
        self._streams: set[asyncio.Queue[str | None]] = set()
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        server.observers.append(self._observe)

    # ------------------------------------------------------------------ lifecycle

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_UPLOAD + 64 * 1024,
                              middlewares=[self._same_origin_posts])
        app.router.add_get("/", self._index)
        app.router.add_static("/static/", STATIC, append_version=False)
        app.router.add_get("/api/events", self._events)
        app.router.add_get("/api/file/{file_id}", self._file)
        app.router.add_post("/api/send", self._json(self._send))
        app.router.add_post("/api/edit", self._json(self._edit))
        app.router.add_post("/api/upload", self._upload)
        app.router.add_post("/api/contact", self._json(self._contact))
        app.router.add_post("/api/press", self._json(self._press))
        app.router.add_post("/api/inline", self._json(self._inline))
        app.router.add_post("/api/inline/choose", self._json(self._choose))
        app.router.add_post("/api/topic", self._json(self._topic))
        if self.desk is not None:
            app.router.add_get("/helpdesk", self._helpdesk_page)
            app.router.add_get("/api/helpdesk", self._helpdesk_state)
            app.router.add_post("/api/helpdesk/reply", self._json(self._helpdesk_reply))
            app.router.add_post("/api/helpdesk/close", self._json(self._helpdesk_close))
            app.router.add_post("/api/helpdesk/reopen", self._json(self._helpdesk_reopen))
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 8088) -> None:
        """Listen on host:port (0 picks a free port); OSError if it is taken."""
        self._runner = web.AppRunner(self.make_app(), access_log=None,
                                     handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            raise
        bound = self._runner.addresses[0][1]
        self.url = f"http://{host}:{bound}"

    async def stop(self) -> None:
        for queue in self._streams:
            queue.put_nowait(None)  # open event streams end
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        with contextlib.suppress(ValueError):
            self.server.observers.remove(self._observe)

    def set_status(self, **fields: Any) -> None:
        """Tell open pages about the bot ("starting", "online", "stopped")."""
        self.status |= fields
        self._broadcast({"type": "status", "status": self.status})

    # ------------------------------------------------------------------ the event stream

    def _observe(self, event: JsonDict) -> None:
        # Presented on the next turn of the loop: the sandbox server finishes the change
        # first (a new topic's first message gets its thread id, a bot message its record).
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._present_and_broadcast(event)
            return
        loop.call_soon(self._present_and_broadcast, event)

    def _present_and_broadcast(self, event: JsonDict) -> None:
        if event["type"] in ("message", "edited"):
            event = event | {"message": self._present(event["message"])}
        self._broadcast(event)

    def _broadcast(self, event: JsonDict) -> None:
        data = json.dumps(event, ensure_ascii=False)
        for queue in self._streams:
            queue.put_nowait(data)
        self._changed.set()
        self._changed = asyncio.Event()

    def _records(self) -> dict[tuple[int, int], JsonDict]:
        return {(record["chat_id"], record["message_id"]): record for record in self.server.sent}

    def _present(self, message: JsonDict,
                 records: dict[tuple[int, int], JsonDict] | None = None) -> JsonDict:
        """A message as the page shows it: a bot message's reply keyboard is not part
        of the Message object, so it is taken from what the bot sent."""
        presented = dict(message)
        if message.get("from", {}).get("id") != self.server.bot_id:
            return presented
        key = (message["chat"]["id"], message["message_id"])
        record = records.get(key) if records is not None else next(
            (r for r in reversed(self.server.sent)
             if (r["chat_id"], r["message_id"]) == key), None)
        markup = (record or {}).get("reply_markup") or {}
        if "keyboard" in markup or markup.get("remove_keyboard"):
            presented["reply_keyboard"] = markup
        return presented

    def snapshot(self) -> JsonDict:
        server = self.server
        records = self._records()
        chat_ids = [person.id for person in (*world.CUSTOMERS, *world.AGENTS)]
        chat_ids.append(world.AGENT_CHAT)
        chats = {
            str(chat_id): [self._present(message, records)
                           for _, message in sorted(server.chats[chat_id].messages.items())]
            for chat_id in chat_ids if chat_id in server.chats
        }
        group = server.chats[world.AGENT_CHAT]
        return {
            "type": "state",
            "bot": server.bot_user,
            "status": self.status,
            "users": {str(user_id): user for user_id, user in server.users.items()},
            "customers": [person.id for person in world.CUSTOMERS],
            "agents": [person.id for person in world.AGENTS],
            "agent_chat": {"id": group.id, "title": group.title, "is_forum": group.is_forum,
                           "admins": sorted({*group.admins, *filter(None, [group.owner_id])})},
            "chats": chats,
            "topics": {str(thread_id): topic
                       for thread_id, topic in server.topics[world.AGENT_CHAT].items()},
            "helpdesk": None if self.desk is None else {"name": self.desk.title,
                                                        "url": "/helpdesk"},
        }

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        # The snapshot and the subscription happen with no await between them: no
        # change is missed (one announced just before may arrive twice; the page upserts).
        first = json.dumps(self.snapshot(), ensure_ascii=False)
        self._streams.add(queue)
        try:
            await response.write(f"data: {first}\n\n".encode())
            while True:
                try:
                    async with asyncio.timeout(KEEP_ALIVE):
                        item = await queue.get()
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if item is None:
                    break
                await response.write(f"data: {item}\n\n".encode())
        except ConnectionError:
            pass  # the tab was closed
        finally:
            self._streams.discard(queue)
        return response

    async def _wait_for(self, check: Callable[[], T], timeout: float) -> T | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (result := check()):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()
        return result

    # ------------------------------------------------------------------ pages and files

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def _helpdesk_page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "helpdesk.html")

    async def _file(self, request: web.Request) -> web.StreamResponse:
        stored = self.server.files.get(request.match_info["file_id"])
        if stored is None:
            raise web.HTTPNotFound()
        content_type = (sniff_image(stored.data) if stored.kind == "photo" else None) or (
            stored.mime_type or "application/octet-stream")
        headers = {}
        if stored.file_name:
            quoted = stored.file_name.replace('"', "")
            headers["Content-Disposition"] = f'inline; filename="{quoted}"'
        return web.Response(body=stored.data, content_type=content_type, headers=headers)

    # ------------------------------------------------------------------ acting as users

    @web.middleware
    async def _same_origin_posts(self, request: web.Request, handler: Handler
                                 ) -> web.StreamResponse:
        # Another site open in the same browser must not act in the sandbox.
        origin = request.headers.get("Origin")
        if request.method == "POST" and origin and origin != f"http://{request.host}":
            return web.json_response({"error": "cross-origin request"}, status=403)
        return await handler(request)

    def _json(self, action: Callable[[JsonDict], Awaitable[JsonDict]]) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                body = await request.json()
            except ValueError:
                return web.json_response({"error": "a JSON object is expected"}, status=400)
            if not isinstance(body, dict):
                return web.json_response({"error": "a JSON object is expected"}, status=400)
            try:
                return web.json_response(await action(body))
            except (BadRequest, ValueError, KeyError) as exc:
                return web.json_response({"error": str(exc)}, status=400)

        return handle

    async def _send(self, body: JsonDict) -> JsonDict:
        text = str(body.get("text") or "")
        if not text.strip():
            raise BadRequest("text is empty")
        message = self.server.user_sends_text(
            _need_int(body, "user_id"), _need_int(body, "chat_id"), text,
            thread_id=_int(body, "thread_id", required=False),
            reply_to=_int(body, "reply_to", required=False))
        return {"message_id": message["message_id"]}

    async def _edit(self, body: JsonDict) -> JsonDict:
        text = str(body.get("text") or "")
        if not text.strip():
            raise BadRequest("text is empty")
        message = self.server.user_edits_text(
            _need_int(body, "user_id"), _need_int(body, "chat_id"),
            _need_int(body, "message_id"), text)
        return {"message_id": message["message_id"]}

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        try:
            form = await request.post()
        except ValueError as exc:  # not multipart, or too large
            return web.json_response({"error": str(exc)}, status=400)
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            return web.json_response({"error": "file is required"}, status=400)
        fields = {name: value for name, value in form.items() if isinstance(value, str)}
        data = upload.file.read()
        try:
            if not data:
                raise BadRequest("the file is empty")
            user_id, chat_id = _need_int(fields, "user_id"), _need_int(fields, "chat_id")
            where: JsonDict = {"caption": fields.get("caption") or None,
                               "thread_id": _int(fields, "thread_id", required=False),
                               "reply_to": _int(fields, "reply_to", required=False)}
            content_type = upload.content_type or "application/octet-stream"
            if content_type in PHOTO_TYPES and sniff_image(data):
                message = self.server.user_sends_photo(user_id, chat_id, data=data, **where)
            else:
                message = self.server.user_sends_document(
                    user_id, chat_id, data=data, file_name=upload.filename or "file",
                    mime_type=None if content_type == "application/octet-stream"
                    else content_type, **where)
        except (BadRequest, ValueError, KeyError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"message_id": message["message_id"]})

    async def _contact(self, body: JsonDict) -> JsonDict:
        """The customer presses "share my contact" on the bot's reply keyboard."""
        user_id = _need_int(body, "user_id")
        person = next((p for p in (*world.CUSTOMERS, *world.AGENTS) if p.id == user_id), None)
        if person is None:
            raise BadRequest(f"unknown user {user_id}")
        contact = {"phone_number": person.phone, "first_name": person.first_name,
                   "user_id": person.id}
        if person.last_name:
            contact["last_name"] = person.last_name
        message = self.server.user_sends(user_id, user_id, contact=contact)
        return {"message_id": message["message_id"]}

    async def _press(self, body: JsonDict) -> JsonDict:
        query_id = self.server.user_presses(
            _need_int(body, "user_id"),
            (_need_int(body, "chat_id"), _need_int(body, "message_id")),
            str(body.get("data") or ""))
        answer = await self._wait_for(lambda: self.server.callback_answers.get(query_id),
                                      ANSWER_TIMEOUT)
        return {"query_id": query_id, "answer": answer}

    async def _inline(self, body: JsonDict) -> JsonDict:
        query = self.server.user_inline_query(_need_int(body, "user_id"),
                                              str(body.get("query") or ""))
        answer = await self._wait_for(lambda: self.server.inline_answers.get(query["id"]),
                                      ANSWER_TIMEOUT)
        return {"query_id": query["id"], "results": (answer or {}).get("results", []),
                "answered": answer is not None}

    async def _choose(self, body: JsonDict) -> JsonDict:
        message = self.server.user_sends_inline_result(
            _need_int(body, "user_id"), _need_int(body, "chat_id"),
            str(body.get("query_id") or ""), str(body.get("result_id") or ""),
            thread_id=_int(body, "thread_id", required=False))
        return {"message_id": message["message_id"]}

    async def _topic(self, body: JsonDict) -> JsonDict:
        """An admin closes or reopens a topic from the topic's menu, as in Telegram's
        clients: the topic changes and a service message from the admin appears in it."""
        user_id, thread_id = _need_int(body, "user_id"), _need_int(body, "thread_id")
        closed = bool(body.get("closed"))
        group = self.server.chats[world.AGENT_CHAT]
        if user_id != group.owner_id and user_id not in group.admins:
            raise BadRequest("only the group's admins close and reopen topics")
        topic = self.server.topics[group.id].get(thread_id)
        if topic is None or topic["deleted"]:
            raise BadRequest(f"no topic {thread_id}")
        if topic["closed"] == closed:
            raise BadRequest("TOPIC_NOT_MODIFIED")
        if closed:
            self.server.close_topic(group.id, thread_id)
        else:
            self.server.reopen_topic(group.id, thread_id)
        service: JsonDict = {"forum_topic_closed" if closed else "forum_topic_reopened": {}}
        message = self.server.user_sends(user_id, group.id, thread_id=thread_id, **service)
        return {"message_id": message["message_id"]}

    # ------------------------------------------------------------------ the helpdesk side

    async def _helpdesk_state(self, request: web.Request) -> web.StreamResponse:
        assert self.desk is not None
        return web.json_response(self.desk.snapshot(), dumps=lambda value: json.dumps(
            value, ensure_ascii=False, default=str))

    async def _helpdesk_reply(self, body: JsonDict) -> JsonDict:
        assert self.desk is not None
        text = str(body.get("text") or "")
        if not text.strip():
            raise BadRequest("text is empty")
        self.desk.reply(str(body.get("ticket") or ""), text,
                        note=bool(body.get("note")))
        return {"ok": True}

    async def _helpdesk_close(self, body: JsonDict) -> JsonDict:
        assert self.desk is not None
        self.desk.close(str(body.get("ticket") or ""))
        return {"ok": True}

    async def _helpdesk_reopen(self, body: JsonDict) -> JsonDict:
        assert self.desk is not None
        self.desk.reopen(str(body.get("ticket") or ""))
        return {"ok": True}
