"""The customer rates a closed request (the star buttons) and may then add a
comment: their next text message, or the Skip button."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from bot import keyboards
from bot.callbacks import CustomerCb
from bot.handlers.bans import KeepBannedOut
from bot.handlers.convert import tg_user
from bot.i18n import gettext, pick_language
from bot.services.satisfaction import SatisfactionService
from bot.services.tickets import TicketService

SKIP_ACTION = "nocomment"


class RatingComment(StatesGroup):
    waiting = State()


async def _lang(tickets: TicketService, event: Message | CallbackQuery) -> str:
    user = event.from_user
    assert user is not None
    return await tickets.customer_language(user.id) or pick_language(user.language_code)


async def on_stars(query: CallbackQuery, callback_data: CustomerCb,
                   satisfaction: SatisfactionService, tickets: TicketService,
                   state: FSMContext) -> None:
    lang = await _lang(tickets, query)
    ticket = await satisfaction.rate(tg_user(query), callback_data.ticket_id, callback_data.value)
    await query.answer(gettext(lang, "customer.thanks_for_rating"))
    if isinstance(query.message, Message):
        await query.message.edit_reply_markup(reply_markup=None)
        await query.message.answer(
            gettext(lang, "customer.rating_comment_prompt", number=ticket.number),
            reply_markup=keyboards.skip_comment(lang, ticket.ticket_id))
    await state.set_state(RatingComment.waiting)
    await state.update_data(rating_ticket_id=ticket.ticket_id)


async def on_skip(query: CallbackQuery, tickets: TicketService, state: FSMContext) -> None:
    lang = await _lang(tickets, query)
    if await state.get_state() == RatingComment.waiting.state:
        await state.clear()
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.edit_text(gettext(lang, "customer.rating_comment_skipped"))


async def on_comment(message: Message, satisfaction: SatisfactionService,
                     tickets: TicketService, state: FSMContext) -> None:
    ticket_id = (await state.get_data()).get("rating_ticket_id")
    await state.clear()
    text = message.text or ""
    if not isinstance(ticket_id, int) or not text or text.startswith("/"):
        # Not a comment (a command, a photo...): handled as usual.
        raise SkipHandler()
    await satisfaction.comment(tg_user(message), ticket_id, text)
    await message.answer(gettext(await _lang(tickets, message),
                                 "customer.rating_comment_thanks"))


def setup() -> Router:
    router = Router(name=__name__)
    router.message.filter(F.chat.type == "private")
    router.callback_query.filter(F.message.chat.type == "private")
    router.message.middleware(KeepBannedOut())
    router.callback_query.middleware(KeepBannedOut())
    router.callback_query.register(
        on_stars, CustomerCb.filter((F.action == "rate") & (F.value > 0)))
    router.callback_query.register(on_skip, CustomerCb.filter(F.action == SKIP_ACTION))
    router.message.register(on_comment, RatingComment.waiting)
    return router
