"""The "/" command menus, registered with `setMyCommands` at start.

Customers see their commands in private chats; agents see theirs in the
agent chat only (a `chat` scope). Each list exists in Russian and English
(Telegram shows the one matching the user's `language_code`) and once without
a language for everyone else: English for customers, AGENT_LANGUAGE for the
agent chat. A command whose capability the provider lacks is left out, like
its button.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeChat,
)

from bot.i18n import DEFAULT_LANGUAGE, LANGUAGES, gettext
from bridges.base import Capabilities, Capability

log = logging.getLogger("deskbridge.menus")
Scope = BotCommandScopeAllPrivateChats | BotCommandScopeChat

# (command, catalog key of its description, capability it needs or None)
CUSTOMER_COMMANDS: tuple[tuple[str, str, Capability | None], ...] = (
    ("new", "commands.new", Capability.CREATE),
    ("tickets", "commands.my_tickets", None),
    ("language", "commands.language", None),
    ("help", "commands.help", None),
    ("start", "commands.start", None),
)
AGENT_COMMANDS: tuple[tuple[str, str, Capability | None], ...] = (
    ("tickets", "commands.queue", None),
    ("take", "commands.take", Capability.ASSIGN),
    ("assign", "commands.assign", Capability.ASSIGN),
    ("close", "commands.close", Capability.CLOSE_REOPEN),
    ("reopen", "commands.reopen", Capability.CLOSE_REOPEN),
    ("priority", "commands.priority", Capability.PRIORITY),
    ("note", "commands.note", Capability.NOTES),
    ("refer", "commands.refer", Capability.REFER),
    ("link", "commands.link", Capability.AGENT_ACCOUNTS),
    ("canned", "commands.canned", None),
    ("stats", "commands.stats", None),
    ("ban", "commands.ban", None),
    ("unban", "commands.unban", None),
    ("bans", "commands.bans", None),
    ("id", "commands.id", None),
    ("help", "commands.agent_help", None),
)


def commands(table: Iterable[tuple[str, str, Capability | None]], capabilities: Capabilities,
             lang: str) -> list[BotCommand]:
    return [BotCommand(command=name, description=gettext(lang, key))
            for name, key, needs in table if needs is None or needs in capabilities]


def menus(agent_chat_id: int, agent_language: str, capabilities: Capabilities
          ) -> list[tuple[Scope, str | None, list[BotCommand]]]:
    """Every (scope, language_code, commands) the bot registers."""
    private = BotCommandScopeAllPrivateChats()
    agents = BotCommandScopeChat(chat_id=agent_chat_id)
    found: list[tuple[Scope, str | None, list[BotCommand]]] = []
    for lang in LANGUAGES:
        found.append((private, lang, commands(CUSTOMER_COMMANDS, capabilities, lang)))
        found.append((agents, lang, commands(AGENT_COMMANDS, capabilities, lang)))
    found.append((private, None, commands(CUSTOMER_COMMANDS, capabilities, DEFAULT_LANGUAGE)))
    found.append((agents, None, commands(AGENT_COMMANDS, capabilities, agent_language)))
    return found


async def register_commands(bot: Bot, agent_chat_id: int, agent_language: str,
                            capabilities: Capabilities) -> bool:
    """Registers every menu; a failure is logged, never fatal (the commands
    work without a menu)."""
    try:
        for scope, language_code, listed in menus(agent_chat_id, agent_language, capabilities):
            await bot.set_my_commands(listed, scope=scope, language_code=language_code)
    except TelegramAPIError as exc:
        log.warning("could not register the command menus: %s", exc)
        return False
    return True
