"""Long polling that confirms a batch only once all of it is handled, and
handles the conversations of a batch side by side.

aiogram's own loop either handles updates one after another (then a handler
waiting for its chat's one-a-second slot holds up every other customer) or
as free tasks (then `getUpdates` confirms updates still being handled, and a
crash loses them). Here the updates of one `getUpdates` batch are grouped by
conversation: a private chat, a topic of a group, a user's inline queries.
Each conversation's updates run in order; conversations run concurrently;
the next `getUpdates`, which confirms the batch to Telegram, is only sent
when every update of the batch is handled. A crash loses nothing, order
holds within a conversation, and a surge of customers is answered at the
pace of Telegram's overall limit, not one chat's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable

from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramConflictError, TelegramUnauthorizedError
from aiogram.types import Update

log = logging.getLogger("deskbridge.updates")

POLL_TIMEOUT_SECONDS = 25
MAX_BACKOFF_SECONDS = 30.0


def conversation_of(update: Update) -> Hashable:
    """The updates that must be handled in order relative to each other."""
    message = (update.message or update.edited_message or
               (update.callback_query.message if update.callback_query else None))
    if message is not None:
        thread = (getattr(message, "message_thread_id", None)
                  if message.chat.type == "supergroup" else None)
        return ("chat", message.chat.id, thread)
    for member in (update.my_chat_member, update.chat_member):
        if member is not None:
            return ("chat", member.chat.id, None)
    if update.message_reaction is not None:
        return ("chat", update.message_reaction.chat.id, None)
    user = next((event.from_user for event in (update.callback_query, update.inline_query,
                                               update.chosen_inline_result)
                 if event is not None), None)
    if user is not None:
        return ("user", user.id)
    return ("update", update.update_id)


class UpdateLoop:
    def __init__(self, dispatcher: Dispatcher, bot: Bot) -> None:
        self._dispatcher = dispatcher
        self._bot = bot
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        allowed = self._dispatcher.resolve_used_update_types()
        offset: int | None = None
        delay = 1.0
        while not self._stop.is_set():
            fetch = asyncio.ensure_future(self._bot.get_updates(
                offset=offset, timeout=POLL_TIMEOUT_SECONDS, allowed_updates=allowed,
                request_timeout=POLL_TIMEOUT_SECONDS + 30))
            stopped = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait({fetch, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            await asyncio.gather(stopped, return_exceptions=True)
            if self._stop.is_set():
                fetch.cancel()
                await asyncio.gather(fetch, return_exceptions=True)
                return
            try:
                updates = fetch.result()
            except TelegramUnauthorizedError:
                raise  # the token is wrong: nothing to wait for
            except Exception as exc:
                level = logging.ERROR if isinstance(exc, TelegramConflictError) else logging.WARNING
                log.log(level, "getUpdates failed (%s: %s); again in %.0fs",
                        type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)
                continue
            delay = 1.0
            if updates:
                await self.handle_batch(updates)
                offset = updates[-1].update_id + 1

    async def handle_batch(self, updates: list[Update]) -> None:
        conversations: dict[Hashable, list[Update]] = {}
        for update in updates:
            conversations.setdefault(conversation_of(update), []).append(update)
        await asyncio.gather(*(self._handle_in_order(group)
                               for group in conversations.values()))

    async def _handle_in_order(self, updates: list[Update]) -> None:
        for update in updates:
            try:
                await self._dispatcher.feed_update(self._bot, update)
            except Exception:
                log.exception("update %s could not be handled", update.update_id)
