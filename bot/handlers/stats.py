"""`/stats` for agents (in the agent chat or a private chat): the figures as
text with a Chart button; `/stats chart` (or the button) sends them as a picture."""

from __future__ import annotations

import asyncio

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import BufferedInputFile, CallbackQuery, Message

from bot import keyboards
from bot.callbacks import StatsCb
from bot.filters import InAgentChat, IsAgent
from bot.i18n import gettext, ngettext, pick_language
from bot.services.stats import StatsService, as_text, chart_png
from bot.telegram.agent_chat import AgentChat

CHART_WORDS = {"chart", "graph", "график", "диаграмма"}


def _lang(message: Message, agent_chat: AgentChat) -> str:
    """The group's language in the group; the agent's own in a private chat."""
    if message.chat.id == agent_chat.chat_id:
        return agent_chat.language
    return pick_language(message.from_user.language_code if message.from_user else None)


async def _send_chart(message: Message, stats: StatsService, lang: str) -> None:
    report = await stats.report()
    # matplotlib is CPU-bound: keep the event loop (and the other updates) going.
    png = await asyncio.to_thread(chart_png, report, lang)
    await message.answer_photo(BufferedInputFile(png, filename="deskbridge-stats.png"),
                               caption=ngettext(lang, "stats.chart_caption",
                                                report.window_days))


async def stats_command(message: Message, command: CommandObject, stats: StatsService,
                        agent_chat: AgentChat) -> None:
    lang = _lang(message, agent_chat)
    if (command.args or "").strip().lower() in CHART_WORDS:
        await _send_chart(message, stats, lang)
        return
    report = await stats.report()
    await message.reply(as_text(report, lang), reply_markup=keyboards.stats_chart(lang))


async def stats_chart(query: CallbackQuery, stats: StatsService, agent_chat: AgentChat
                      ) -> None:
    await query.answer()
    if isinstance(query.message, Message):
        await _send_chart(query.message, stats, _lang(query.message, agent_chat))


async def refuse_chart(query: CallbackQuery) -> None:
    await query.answer(gettext(pick_language(query.from_user.language_code),
                               "errors.agents_only"), show_alert=True)


def setup() -> Router:
    router = Router(name=__name__)

    group = Router(name=f"{__name__}.group")
    group.message.filter(InAgentChat(), IsAgent())
    group.callback_query.filter(InAgentChat(), IsAgent())
    group.message.register(stats_command, Command("stats"))
    group.callback_query.register(stats_chart, StatsCb.filter())

    private = Router(name=f"{__name__}.private")
    private.message.filter(F.chat.type == "private")
    private.callback_query.filter(F.message.chat.type == "private")
    # The command (or button) first: customers' messages never cost a getChatMember call.
    private.message.register(stats_command, Command("stats"), IsAgent())
    private.callback_query.register(stats_chart, StatsCb.filter(), IsAgent())

    # Non-agents pressing a (forwarded or forged) Chart button; `/stats` from
    # them is refused with the other agent commands (bot.handlers.agents).
    refusals = Router(name=f"{__name__}.refusals")
    refusals.callback_query.register(refuse_chart, StatsCb.filter())

    router.include_routers(group, private, refusals)
    return router
