"""A customer edits a message they sent the bot (`edited_message` updates)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiogram import F, Router
from aiogram.types import Message

from bot.handlers.bans import KeepBannedOut
from bot.handlers.convert import incoming, is_supported
from bot.services.edits import EditService


async def on_customer_edit(message: Message, edits: EditService) -> None:
    edited_at = datetime.fromtimestamp(message.edit_date, UTC) if message.edit_date else None
    await edits.customer_edited(incoming(message), edited_at)


def setup() -> Router:
    router = Router(name=__name__)
    router.edited_message.filter(F.chat.type == "private")
    router.edited_message.middleware(KeepBannedOut())
    router.edited_message.register(on_customer_edit, is_supported)
    return router
