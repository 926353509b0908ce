"""aiogram's HTTP session with the one send path.

Every Bot API call passes the session's request middleware (`PacedRequests`):
a call that sends or changes something in a chat waits for the pacer (so
handler replies, outbox deliveries, edits, topic calls, pins and reactions
share one budget), and a 429 is waited out and the call made again; it never
reaches a handler or a customer. Answers to callback and inline queries are
not messages and go at once.

Two more things the session does:

* It holds each `Response[T]` the bot has used. pydantic caches parametrised
  generic models in a `WeakValueDictionary` and nothing else holds
  `Response[Message]`, so the class was garbage-collected between calls and
  built again, schema and all (about 5 % of the bot's CPU in `bench.relay`).
* After a 200 with `"ok": true` a send is a fact, even when its answer cannot
  be parsed (an older self-hosted Bot API server, a field this aiogram does
  not know): the session logs it and hands back what it could read, so the
  send is recorded as done and never made again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import ClientDecodeError, TelegramMigrateToChat, TelegramRetryAfter
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import Chat, Message

from bot.telegram.pacer import SendLater, TelegramPacer, current_patience

log = logging.getLogger("deskbridge.telegram")

_RESPONSE_TYPES: dict[Any, type[Response[Any]]] = {}

_PACED_PREFIXES = ("send", "copymessage", "forwardmessage", "editmessage")
_PACED_NAMES = frozenset({
    "createforumtopic", "editforumtopic", "closeforumtopic", "reopenforumtopic",
    "deleteforumtopic", "editgeneralforumtopic", "closegeneralforumtopic",
    "reopengeneralforumtopic", "pinchatmessage", "unpinchatmessage",
    "unpinallforumtopicmessages", "setmessagereaction", "deletemessage", "deletemessages",
    "stoppoll", "stopmessagelivelocation",
})
_UNPACED_NAMES = frozenset({"sendchataction"})  # a status, not a message


def is_paced(method: TelegramMethod[Any]) -> bool:
    """Does Telegram count this call against a chat's limits?"""
    name = method.__api_method__.lower()
    if name in _UNPACED_NAMES:
        return False
    return name in _PACED_NAMES or name.startswith(_PACED_PREFIXES)


def chat_of(method: TelegramMethod[Any]) -> int | None:
    chat_id = getattr(method, "chat_id", None)
    return chat_id if isinstance(chat_id, int) else None


class PacedRequests(BaseRequestMiddleware):
    def __init__(self, pacer: TelegramPacer,
                 on_429: Callable[[TelegramMethod[Any], float], None] | None = None,
                 on_migrate: Callable[[int, int], Awaitable[None]] | None = None) -> None:
        self.pacer = pacer
        self._on_429 = on_429
        self._on_migrate = on_migrate

    async def __call__(self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot,
                       method: TelegramMethod[TelegramType]) -> Response[TelegramType]:
        if not is_paced(method):
            return await make_request(bot, method)
        chat_id = chat_of(method)
        while True:
            await self.pacer.acquire(chat_id)
            try:
                return await make_request(bot, method)
            except TelegramMigrateToChat as exc:
                # The group became a supergroup with a new id: follow it.
                if self._on_migrate is None or chat_id is None:
                    raise
                await self._on_migrate(chat_id, exc.migrate_to_chat_id)
                method = method.model_copy(update={"chat_id": exc.migrate_to_chat_id})
                chat_id = exc.migrate_to_chat_id
            except TelegramRetryAfter as exc:
                # Our pacing stays under the documented limits, so a 429 means
                # Telegram wants more room than that in this chat: the chat
                # pauses (the overall pace is ours to keep, and a pause of
                # everything for one chat's 429 would stall a surge).
                scope = chat_id
                await self.pacer.budget.pause(scope, exc.retry_after)
                if self._on_429 is not None:
                    self._on_429(method, exc.retry_after)
                log.warning("Telegram asked to wait %ss (%s to %s); the call waits and goes again",
                            exc.retry_after, method.__api_method__, chat_id)
                patience = current_patience()
                if patience is not None and exc.retry_after > patience:
                    raise SendLater(exc.retry_after) from exc


class TelegramSession(AiohttpSession):
    def check_response(self, bot: Bot, method: TelegramMethod[TelegramType], status_code: int,
                       content: str) -> Response[TelegramType]:
        returning = method.__returning__
        if returning not in _RESPONSE_TYPES:
            _RESPONSE_TYPES[returning] = Response[returning]  # type: ignore[valid-type]
        try:
            return super().check_response(bot, method, status_code, content)
        except ClientDecodeError as exc:
            accepted = _accepted(status_code, content, self)
            if accepted is None:
                raise
            log.warning("Telegram accepted %s but its answer could not be read (%s); "
                        "recorded as sent", method.__api_method__, exc.message)
            return Response[Any].model_construct(
                ok=True, result=_best_effort(accepted.get("result"), method))


def _accepted(status_code: int, content: str, session: AiohttpSession) -> dict[str, Any] | None:
    if not 200 <= status_code < 300:
        return None
    try:
        data = session.json_loads(content)
    except Exception:
        return None
    return data if isinstance(data, dict) and data.get("ok") is True else None


def _best_effort(result: Any, method: TelegramMethod[Any]) -> Any:
    """What the bot needs of an accepted send it could not parse: the ids."""
    def message(raw: Any) -> Any:
        if not isinstance(raw, dict) or "message_id" not in raw:
            return raw
        chat: dict[str, Any] = raw["chat"] if isinstance(raw.get("chat"), dict) else {}
        chat_id = chat.get("id", chat_of(method) or 0)
        return Message.model_construct(
            message_id=raw["message_id"],
            date=datetime.fromtimestamp(raw.get("date", 0), UTC),
            chat=Chat.model_construct(id=chat_id, type=chat.get("type", "private")),
            message_thread_id=raw.get("message_thread_id"))

    if isinstance(result, list):
        return [message(item) for item in result]
    return message(result)
