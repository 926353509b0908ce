"""aiogram's HTTP session, without rebuilding a pydantic model per call.

aiogram validates every Bot API answer as `Response[T]` (T the method's
result type). pydantic caches parametrised generic models in a
`WeakValueDictionary`, and nothing else holds `Response[Message]`, so the
class is garbage-collected between calls and built again, schema and all:
profiling `bench.relay` showed about 5 % of the bot's CPU time spent there.
Holding each `Response[T]` the bot has used keeps pydantic's cache warm (a
few dozen small classes, built once).
"""

from __future__ import annotations

from typing import Any

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType

_RESPONSE_TYPES: dict[Any, type[Response[Any]]] = {}


class TelegramSession(AiohttpSession):
    def check_response(self, bot: Bot, method: TelegramMethod[TelegramType], status_code: int,
                       content: str) -> Response[TelegramType]:
        returning = method.__returning__
        if returning not in _RESPONSE_TYPES:
            _RESPONSE_TYPES[returning] = Response[returning]  # type: ignore[valid-type]
        return super().check_response(bot, method, status_code, content)
