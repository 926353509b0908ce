"""The one place that turns errors into words for the user, in their language."""

from __future__ import annotations

import logging

from aiogram import Router
from aiogram.filters import ExceptionTypeFilter
from aiogram.types import ErrorEvent

from bot.i18n import gettext, pick_language
from bot.services.errors import UserFacingError
from bot.services.tickets import TicketService

log = logging.getLogger("deskbridge.handlers")


async def _language(event: ErrorEvent, tickets: TicketService, agent_chat_id: int,
                    agent_language: str) -> tuple[str, object]:
    update = event.update
    target = update.message or update.callback_query or update.inline_query
    user = getattr(target, "from_user", None)
    chat = getattr(update.message, "chat", None) or getattr(
        getattr(update.callback_query, "message", None), "chat", None)
    if chat is not None and chat.id == agent_chat_id:
        return agent_language, target
    if user is not None:
        stored = await tickets.customer_language(user.id)
        return stored or pick_language(user.language_code), target
    return "en", target


async def _tell(event: ErrorEvent, text: str, target: object) -> None:
    update = event.update
    if update.callback_query is not None:
        await update.callback_query.answer(text, show_alert=True)
    elif update.message is not None:
        await update.message.reply(text, allow_sending_without_reply=True)


async def on_user_facing(event: ErrorEvent, tickets: TicketService, settings: object) -> None:
    exc = event.exception
    assert isinstance(exc, UserFacingError)
    lang, target = await _language(event, tickets, settings.agent_chat_id,  # type: ignore[attr-defined]
                                   settings.agent_language)  # type: ignore[attr-defined]
    await _tell(event, gettext(lang, exc.key, **exc.params), target)


async def on_unexpected(event: ErrorEvent, tickets: TicketService, settings: object) -> None:
    log.error("update %s failed", event.update.update_id, exc_info=event.exception)
    try:
        lang, target = await _language(event, tickets, settings.agent_chat_id,  # type: ignore[attr-defined]
                                       settings.agent_language)  # type: ignore[attr-defined]
        await _tell(event, gettext(lang, "errors.unexpected"), target)
    except Exception:
        log.exception("could not tell the user about the failure")


def setup() -> Router:
    router = Router(name=__name__)
    router.errors.register(on_user_facing, ExceptionTypeFilter(UserFacingError))
    router.errors.register(on_unexpected)
    return router
