"""Edited messages (`edited_message` updates): a customer's in their private
chat, an agent's reply or note in a ticket's topic."""

from __future__ import annotations

from datetime import UTC, datetime

from aiogram import F, Router
from aiogram.types import Message

from bot.filters import InAgentChat, IsAgent
from bot.handlers.bans import KeepBannedOut
from bot.handlers.convert import incoming, is_supported
from bot.services.edits import EditService


async def on_customer_edit(message: Message, edits: EditService) -> None:
    edited_at = datetime.fromtimestamp(message.edit_date, UTC) if message.edit_date else None
    await edits.customer_edited(incoming(message), edited_at)


async def on_agent_edit(message: Message, edits: EditService) -> None:
    edited_at = datetime.fromtimestamp(message.edit_date, UTC) if message.edit_date else None
    await edits.agent_edited(incoming(message), edited_at)


def setup() -> Router:
    router = Router(name=__name__)
    customers = Router(name=f"{__name__}.customers")
    customers.edited_message.filter(F.chat.type == "private")
    customers.edited_message.middleware(KeepBannedOut())
    customers.edited_message.register(on_customer_edit, is_supported)
    # Agents edit their replies in the agent chat (a bot learns of edits, not
    # of deletions: the Bot API sends no update when a message is deleted).
    agents = Router(name=f"{__name__}.agents")
    agents.edited_message.filter(InAgentChat(), IsAgent())
    agents.edited_message.register(on_agent_edit, is_supported)
    router.include_routers(customers, agents)
    return router
