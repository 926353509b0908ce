"""Bans: `/ban [reason]` in a ticket's topic (or `/ban <telegram id> [reason]`
anywhere in the agent chat), `/unban`, `/bans`; and the gate that keeps a
banned user's messages out (bot.services.bans)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message, TelegramObject

from bot.filters import InAgentChat, IsAgent
from bot.handlers.agents import _ticket_of
from bot.handlers.convert import tg_user
from bot.i18n import gettext, pick_language
from bot.services import render
from bot.services.bans import BanService
from bot.services.errors import UserFacingError
from bot.services.tickets import TicketService
from bot.telegram.agent_chat import AgentChat

REASON_LIMIT = 500


async def _target(message: Message, command: CommandObject, tickets: TicketService,
                  agent_chat: AgentChat, bans: BanService, usage: str
                  ) -> tuple[int, str, str | None]:
    """Who a command is about: a Telegram id given first, else the customer of
    the ticket whose topic it is typed in. Returns (id, name, rest of the text)."""
    words = (command.args or "").strip()
    first, _, rest = words.partition(" ")
    if first.lstrip("-").isdigit() and len(first) <= 20:
        tg_user_id = int(first)
        if tg_user_id <= 0:
            raise UserFacingError(usage)
        name = await bans.name_of(tg_user_id) or str(tg_user_id)
        return tg_user_id, name, rest.strip() or None
    ticket_id = await _ticket_of(message, tickets, agent_chat)
    if ticket_id is None:
        raise UserFacingError(usage)
    tg_user_id, name = await bans.customer_of(ticket_id)
    return tg_user_id, name, words or None


async def ban(message: Message, command: CommandObject, tickets: TicketService,
              agent_chat: AgentChat, bans: BanService) -> None:
    tg_user_id, name, reason = await _target(message, command, tickets, agent_chat, bans,
                                             "agent.usage_ban")
    if message.from_user is not None and tg_user_id == message.from_user.id:
        raise UserFacingError("agent.ban_self")
    reason = reason[:REASON_LIMIT] if reason else None
    by = tg_user(message).full_name
    fresh = await bans.ban(tg_user_id, reason, by)
    key = "agent.banned" if fresh else "agent.already_banned"
    await message.reply(gettext(agent_chat.language, key, name=render.escape(name),
                                id=tg_user_id, reason=render.escape(reason or "—")))


async def unban(message: Message, command: CommandObject, tickets: TicketService,
                agent_chat: AgentChat, bans: BanService) -> None:
    tg_user_id, name, _ = await _target(message, command, tickets, agent_chat, bans,
                                        "agent.usage_unban")
    key = "agent.unbanned" if await bans.unban(tg_user_id) else "agent.not_banned"
    await message.reply(gettext(agent_chat.language, key, name=render.escape(name),
                                id=tg_user_id))


async def list_bans(message: Message, agent_chat: AgentChat, bans: BanService) -> None:
    lang = agent_chat.language
    entries = await bans.list()
    if not entries:
        await message.reply(gettext(lang, "agent.bans_empty"))
        return
    lines = [gettext(lang, "agent.bans_title", count=len(entries))]
    for entry in entries:
        lines.append(gettext(
            lang, "agent.bans_line", name=render.escape(entry.name or str(entry.tg_user_id)),
            id=entry.tg_user_id, reason=render.escape(entry.reason or "—"),
            by=render.escape(entry.banned_by or "—"), at=render.when(entry.created_at)))
    await message.reply("\n".join(lines)[: render.TELEGRAM_TEXT_LIMIT])


class KeepBannedOut(BaseMiddleware):
    """On the customer side: a banned user's messages, edits and button presses
    go nowhere; the first one after the ban gets one polite notice."""

    async def __call__(self, handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
                       event: TelegramObject, data: dict[str, Any]) -> Any:
        user = data.get("event_from_user")
        bans: BanService | None = data.get("bans")
        if user is None or bans is None:
            return await handler(event, data)
        banned, tell = await bans.check(user.id)
        if not banned:
            return await handler(event, data)
        if isinstance(event, CallbackQuery):
            await event.answer()
        if tell:
            tickets: TicketService = data["tickets"]
            lang = (await tickets.customer_language(user.id)) or pick_language(
                user.language_code)
            text = gettext(lang, "customer.banned")
            target = event.message if isinstance(event, CallbackQuery) else event
            if isinstance(target, Message):
                await target.answer(text)
        return None


def setup() -> Router:
    router = Router(name=__name__)
    router.message.filter(InAgentChat(), IsAgent())
    router.message.register(ban, Command("ban"))
    router.message.register(unban, Command("unban"))
    router.message.register(list_bans, Command("bans"))
    return router
