"""Dead letters for agents: `/failed` in the agent chat, and the Retry /
Discard buttons on a failed delivery's notice (bot.outbox.dead_letters)."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot import keyboards
from bot.callbacks import DeadCb
from bot.filters import InAgentChat, IsAgent
from bot.i18n import gettext
from bot.outbox import OutboxSignal
from bot.outbox.dead_letters import DeadLetters
from bot.services import render
from bot.telegram.agent_chat import AgentChat

LISTED = 10  # the newest ones; `deskbridge outbox list` shows all


async def failed(message: Message, dead_letters: DeadLetters, agent_chat: AgentChat) -> None:
    lang = agent_chat.language
    letters = await dead_letters.find()
    if not letters:
        await message.reply(gettext(lang, "dead.none"))
        return
    shown = letters[-LISTED:]
    lines = [gettext(lang, "dead.list_header", count=len(letters))]
    lines += [gettext(lang, "dead.list_line", row=letter.row_id,
                      number=render.escape(letter.ticket_number or "—"),
                      what=gettext(lang, f"dead.what.{letter.what}"),
                      why=gettext(lang, f"dead.why.{letter.why}")) for letter in shown]
    await message.reply("\n".join(lines),
                        reply_markup=keyboards.dead_letters(lang, [x.row_id for x in shown]))


async def on_dead_letter(query: CallbackQuery, callback_data: DeadCb, dead_letters: DeadLetters,
                         agent_chat: AgentChat, outbox_signal: OutboxSignal) -> None:
    lang = agent_chat.language
    if callback_data.action == "retry":
        done = await dead_letters.replay([callback_data.row_id])
        outbox_signal.notify()
        key = "dead.retried" if done else "dead.already"
    elif callback_data.action == "discard":
        done = await dead_letters.discard([callback_data.row_id])
        key = "dead.discarded" if done else "dead.already"
    else:
        await query.answer(gettext(lang, "errors.stale_button"), show_alert=True)
        return
    await query.answer(gettext(lang, key))
    message = query.message
    if isinstance(message, Message) and message.reply_markup is not None:
        # The buttons of this letter go; the others of a /failed list stay.
        rows = [[button for button in row
                 if not (button.callback_data or "").endswith(f":{callback_data.row_id}")]
                for row in message.reply_markup.inline_keyboard]
        rows = [row for row in rows if row]
        await message.edit_reply_markup(
            reply_markup=InlineKeyboardMarkup(inline_keyboard=rows) if rows else None)


def setup() -> Router:
    router = Router(name=__name__)
    router.message.filter(InAgentChat(), IsAgent())
    router.callback_query.filter(InAgentChat(), IsAgent())
    router.message.register(failed, Command("failed"))
    router.callback_query.register(on_dead_letter, DeadCb.filter())
    return router
