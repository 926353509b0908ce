"""`/canned add <title> | <text>`, `/canned list`, `/canned del <id>` in the agent chat.

Agents insert canned replies with inline mode (`@bot <words of the title>`);
see bot.services.knowledge for where they are kept.
"""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot.filters import InAgentChat, IsAgent
from bot.handlers.agents import RememberAgents
from bot.handlers.convert import tg_user
from bot.i18n import gettext
from bot.services import render
from bot.services.errors import UserFacingError
from bot.services.knowledge import Canned, KnowledgeService
from bot.telegram.agent_chat import AgentChat

LIST_EXCERPT = 60
# A title starting with this keeps the reply staff-only (like a `#` note).
STAFF_ONLY_PREFIX = "#"


def _line(item: Canned, lang: str) -> str:
    excerpt = " ".join(item.text.split())
    if len(excerpt) > LIST_EXCERPT:
        excerpt = excerpt[: LIST_EXCERPT - 1] + "…"
    staff = f" · <i>{gettext(lang, 'canned.staff_only')}</i>" if not item.public else ""
    return (f"<code>{item.canned_id}</code> · <b>{render.escape(item.title)}</b>{staff}\n"
            f"    {render.escape(excerpt)}")


async def canned(message: Message, command: CommandObject, knowledge: KnowledgeService,
                 agent_chat: AgentChat, bot: Bot) -> None:
    lang = agent_chat.language
    action, _, rest = (command.args or "").strip().partition(" ")
    action = action.lower().strip()
    if "\n" in action:  # "/canned add\nTitle | text"
        action, _, more = action.partition("\n")
        rest = f"{more}\n{rest}".strip()
    if action == "add":
        title, bar, text = rest.partition("|")
        if not bar:
            raise UserFacingError("canned.usage")
        title = title.strip()
        public = not title.startswith(STAFF_ONLY_PREFIX)
        item = await knowledge.add_canned(tg_user(message), title.lstrip(STAFF_ONLY_PREFIX),
                                          text, public=public)
        key = "canned.added" if public else "canned.added_staff"
        await message.reply(gettext(lang, key, id=item.canned_id,
                                    title=render.escape(item.title)))
    elif action in {"del", "delete", "rm"}:
        ref = rest.strip().lstrip("#")
        if not (ref.isascii() and ref.isdigit()):
            raise UserFacingError("canned.usage")
        removed = await knowledge.delete_canned(int(ref))
        if removed is None:
            raise UserFacingError("canned.not_found", id=ref)
        await message.reply(gettext(lang, "canned.deleted", id=removed.canned_id,
                                    title=render.escape(removed.title)))
    elif action in {"", "list"}:
        items = await knowledge.list_canned()
        if not items:
            await message.reply(gettext(lang, "canned.empty"))
            return
        lines = [gettext(lang, "canned.list_title", count=len(items))]
        lines += [_line(item, lang) for item in items]
        lines.append(gettext(lang, "canned.list_hint", bot=(await bot.me()).username or "bot"))
        for chunk in render.split_text("\n".join(lines)):
            await message.answer(chunk)
    else:
        raise UserFacingError("canned.usage")


def setup() -> Router:
    router = Router(name=__name__)
    router.message.filter(InAgentChat(), IsAgent())
    router.message.middleware(RememberAgents())
    router.message.register(canned, Command("canned"))
    return router
