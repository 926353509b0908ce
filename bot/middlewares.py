"""Update middlewares."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

log = logging.getLogger("deskbridge.handlers")

# How long an update waits for the database to come back before it is given up.
DATABASE_PATIENCE_SECONDS = 300.0


# PostgreSQL error classes that mean "the server is not taking us now":
# 08 connection exceptions, 57P admin shutdown / cannot connect now, 53300 too
# many connections, 55000 a database refusing connections (ALLOW_CONNECTIONS).
OUTAGE_SQLSTATES = ("08", "57P", "53300", "55000")


def is_database_outage(exc: BaseException) -> bool:
    """Connection-level failures (as opposed to a bad query or a constraint)."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        for cause in (exc.orig, getattr(exc.orig, "__cause__", None)):
            state = str(getattr(cause, "sqlstate", "") or "")
            if state.startswith(OUTAGE_SQLSTATES):
                return True
    return isinstance(exc, ConnectionError | TimeoutError | OSError)


class RetryWhileDatabaseDown(BaseMiddleware):
    """Handle an update again, with backoff, while the database is unreachable.

    Updates are confirmed to Telegram only once handled (see App.run_polling),
    so holding on to one while the database is down loses nothing: the next
    updates wait, and everything is processed in order when it is back.
    Handlers are safe to repeat: what they store is keyed by Telegram's ids.
    """

    def __init__(self, patience: float = DATABASE_PATIENCE_SECONDS) -> None:
        self._patience = patience

    async def __call__(self, handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
                       event: TelegramObject, data: dict[str, Any]) -> Any:
        deadline = time.monotonic() + self._patience
        delay = 0.25
        while True:
            try:
                return await handler(event, data)
            except Exception as exc:
                if not is_database_outage(exc) or time.monotonic() + delay > deadline:
                    raise
                log.warning("database unavailable (%s); retrying the update in %.1fs",
                            type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
