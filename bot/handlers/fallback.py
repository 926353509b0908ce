"""What no other router took: a button press whose data is malformed, forged
or from an old version of the bot gets a short alert (a callback query must
always be answered, or the button keeps spinning), never a chat message."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import CallbackQuery

from bot.i18n import gettext, pick_language


async def stale_button(query: CallbackQuery) -> None:
    lang = pick_language(query.from_user.language_code)
    await query.answer(gettext(lang, "errors.stale_button"), show_alert=True)


def setup() -> Router:
    router = Router(name=__name__)
    router.callback_query.register(stale_button)
    return router
