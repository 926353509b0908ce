"""Inline keyboards. Buttons exist only for what the provider can do."""

from __future__ import annotations

from collections.abc import Sequence

from aiogram.types import InlineKeyboardMarkup, KeyboardButton, ReplyKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.callbacks import AgentCb, CustomerCb, DeadCb, DepartmentCb, MenuCb, StatsCb
from bot.i18n import gettext
from bot.services.types import Page, TicketSummary
from bridges.base import Capabilities, Capability, Department, Priority, TicketStatus

STATUS_ICON = {"open": "🟢", "waiting": "🟡", "closed": "⚪️"}


def dead_letters(lang: str, row_ids: Sequence[int]) -> InlineKeyboardMarkup | None:
    """Retry / Discard for each dead letter (numbered when there are several)."""
    if not row_ids:
        return None
    kb = InlineKeyboardBuilder()
    for row_id in row_ids:
        suffix = f" {row_id}" if len(row_ids) > 1 else ""
        kb.button(text=gettext(lang, "dead.retry") + suffix,
                  callback_data=DeadCb(action="retry", row_id=row_id))
        kb.button(text=gettext(lang, "dead.discard") + suffix,
                  callback_data=DeadCb(action="discard", row_id=row_id))
    kb.adjust(2)
    return kb.as_markup()


def main_menu(lang: str) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(text=gettext(lang, "menu.new"), callback_data=MenuCb(action="new"))
    kb.button(text=gettext(lang, "menu.list"), callback_data=MenuCb(action="list"))
    kb.button(text=gettext(lang, "menu.help"), callback_data=MenuCb(action="help"))
    kb.button(text=gettext(lang, "menu.language"), callback_data=MenuCb(action="lang"))
    kb.adjust(1, 1, 2)
    return kb.as_markup()


def ticket_list(lang: str, page: Page) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for item in page.items:
        kb.button(
            text=f"{STATUS_ICON.get(item.status, '')} #{item.number} {item.subject}"[:64],
            callback_data=CustomerCb(action="open", ticket_id=item.ticket_id),
        )
    kb.adjust(1)
    nav = InlineKeyboardBuilder()
    if page.page > 0:
        nav.button(text="«", callback_data=CustomerCb(action="page", value=page.page - 1))
    if page.pages > 1:
        nav.button(text=f"{page.page + 1}/{page.pages}",
                   callback_data=CustomerCb(action="page", value=page.page))
    if page.page + 1 < page.pages:
        nav.button(text="»", callback_data=CustomerCb(action="page", value=page.page + 1))
    nav.adjust(3)
    kb.attach(nav)
    return kb.as_markup()


def customer_ticket(lang: str, ticket: TicketSummary, caps: Capabilities) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    if ticket.status != TicketStatus.CLOSED:
        kb.button(text=gettext(lang, "ticket.write"),
                  callback_data=CustomerCb(action="write", ticket_id=ticket.ticket_id))
        if Capability.CLOSE_REOPEN in caps:
            kb.button(text=gettext(lang, "ticket.close"),
                      callback_data=CustomerCb(action="close", ticket_id=ticket.ticket_id))
    else:
        if Capability.CLOSE_REOPEN in caps:
            kb.button(text=gettext(lang, "ticket.reopen"),
                      callback_data=CustomerCb(action="reopen", ticket_id=ticket.ticket_id))
        if ticket.rating is None:
            kb.button(text=gettext(lang, "ticket.rate"),
                      callback_data=CustomerCb(action="rate", ticket_id=ticket.ticket_id))
    kb.button(text=gettext(lang, "ticket.back"), callback_data=CustomerCb(action="page"))
    kb.adjust(1)
    return kb.as_markup()


def rating(ticket_id: int, lang: str, caps: Capabilities) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for stars in range(1, 6):
        kb.button(text="⭐" * stars if stars < 4 else f"{stars}⭐",
                  callback_data=CustomerCb(action="rate", ticket_id=ticket_id, value=stars))
    if Capability.CLOSE_REOPEN in caps:
        kb.button(text=gettext(lang, "ticket.reopen"),
                  callback_data=CustomerCb(action="reopen", ticket_id=ticket_id))
    kb.adjust(5, 1)
    return kb.as_markup()


def skip_comment(lang: str, ticket_id: int) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(text=gettext(lang, "customer.rating_comment_skip"),
              callback_data=CustomerCb(action="nocomment", ticket_id=ticket_id))
    return kb.as_markup()


def stats_chart(lang: str) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(text=gettext(lang, "stats.chart_button"), callback_data=StatsCb(action="chart"))
    return kb.as_markup()


def choose_ticket(lang: str, draft_id: int, choices: Sequence[TicketSummary]
                  ) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for item in choices[:8]:
        kb.button(text=f"#{item.number} {item.subject}"[:64],
                  callback_data=CustomerCb(action="place", ticket_id=item.ticket_id,
                                           value=draft_id))
    kb.button(text=gettext(lang, "customer.as_new_ticket"),
              callback_data=CustomerCb(action="new", value=draft_id))
    kb.adjust(1)
    return kb.as_markup()


def departments(draft_id: int, choices: Sequence[Department]) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for department in choices[:30]:
        kb.button(text=department.title[:64],
                  callback_data=DepartmentCb(draft_id=draft_id, department_id=department.remote_id))
    kb.adjust(1)
    return kb.as_markup()


def share_contact(lang: str) -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        keyboard=[[KeyboardButton(text=gettext(lang, "customer.contact_button"),
                                  request_contact=True)]],
        resize_keyboard=True, one_time_keyboard=True)


def agent_card(lang: str, ticket_id: int, status: str, caps: Capabilities
               ) -> InlineKeyboardMarkup | None:
    kb = InlineKeyboardBuilder()
    if Capability.ASSIGN in caps:
        kb.button(text=gettext(lang, "card.take"), callback_data=AgentCb(action="take",
                                                                       ticket_id=ticket_id))
    if Capability.CLOSE_REOPEN in caps:
        if status == TicketStatus.CLOSED:
            kb.button(text=gettext(lang, "card.reopen"),
                      callback_data=AgentCb(action="reopen", ticket_id=ticket_id))
        else:
            kb.button(text=gettext(lang, "card.close"),
                      callback_data=AgentCb(action="close", ticket_id=ticket_id))
    if Capability.PRIORITY in caps:
        kb.button(text=gettext(lang, "card.priority"),
                  callback_data=AgentCb(action="prio", ticket_id=ticket_id))
    if Capability.NOTES in caps:
        kb.button(text=gettext(lang, "card.note"), callback_data=AgentCb(action="note",
                                                                       ticket_id=ticket_id))
    kb.adjust(2)
    markup = kb.as_markup()
    return markup if markup.inline_keyboard else None


def priorities(lang: str, ticket_id: int) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for priority in Priority:
        kb.button(text=gettext(lang, f"priority.{priority.value}"),
                  callback_data=AgentCb(action="setprio", ticket_id=ticket_id,
                                        value=priority.value))
    kb.button(text="«", callback_data=AgentCb(action="back", ticket_id=ticket_id))
    kb.adjust(4, 1)
    return kb.as_markup()
