"""Groups as such: `/id` in any group (how an operator setting up by hand
finds AGENT_CHAT_ID), and a log line whenever the bot is added to a group,
removed, or has its rights changed."""

from __future__ import annotations

import logging

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import ChatMemberUpdated, Message

from bot.i18n import gettext, pick_language
from bot.telegram.agent_chat import AgentChat

log = logging.getLogger("deskbridge.groups")
GROUP_TYPES = {"group", "supergroup"}
PRESENT = {"administrator", "member", "creator", "restricted"}


async def chat_id(message: Message, agent_chat: AgentChat) -> None:
    lang = agent_chat.language if message.chat.id == agent_chat.chat_id else pick_language(
        message.from_user.language_code if message.from_user else None)
    text = gettext(lang, "groups.chat_id", chat_id=message.chat.id)
    if message.chat.type == "group":
        text += "\n\n" + gettext(lang, "groups.basic_group")
    await message.reply(text)


async def membership(event: ChatMemberUpdated, agent_chat: AgentChat) -> None:
    chat, member = event.chat, event.new_chat_member
    who = f"{event.from_user.full_name} ({event.from_user.id})"
    title = chat.title or ""
    if member.status not in PRESENT:
        if chat.id == agent_chat.chat_id:
            log.error("the bot was removed from the agent chat %r (%s) by %s: it cannot work "
                      "until it is added back", title, chat.id, who)
        else:
            log.info("the bot left the group %r (%s)", title, chat.id)
        return
    rights = "administrator" if member.status == "administrator" else member.status
    if member.status == "administrator" and not getattr(member, "can_manage_topics", False):
        rights += " without Manage topics"
    if chat.id == agent_chat.chat_id:
        log.info("the bot is now %s of the agent chat %r (%s)", rights, title, chat.id)
    else:
        log.info("the bot was added to the %s %r as %s by %s: its id is %s; to make it the "
                 "agent chat, set AGENT_CHAT_ID=%s", chat.type, title, rights, who, chat.id,
                 chat.id)


def setup() -> Router:
    router = Router(name=__name__)
    router.message.filter(F.chat.type.in_(GROUP_TYPES))
    router.message.register(chat_id, Command("id"))
    router.my_chat_member.filter(F.chat.type.in_(GROUP_TYPES))
    router.my_chat_member.register(membership)
    return router
