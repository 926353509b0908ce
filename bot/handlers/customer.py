"""The customer's private chat with the bot."""

from __future__ import annotations

import re

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.filters.chat_member_updated import KICKED, MEMBER, ChatMemberUpdatedFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, ChatMemberUpdated, Message, ReplyKeyboardRemove

from bot import keyboards
from bot.callbacks import CustomerCb, DepartmentCb, MenuCb
from bot.filters import AgentAccess
from bot.handlers.bans import KeepBannedOut
from bot.handlers.convert import incoming, is_supported, tg_user
from bot.i18n import LANGUAGES, gettext
from bot.outbox.provider import BOT_API_DOWNLOAD_LIMIT
from bot.services import render
from bot.services.tickets import TicketService
from bot.services.types import CustomerResult, Outcome, TicketSummary
from bridges.base import TicketStatus

AGENT_COMMANDS = ("take", "assign", "close", "reopen", "priority", "note", "refer", "canned",
                  "ban", "unban", "bans")


class NewRequest(StatesGroup):
    composing = State()


class ContactNeeded(StatesGroup):
    waiting = State()


EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Outcomes that ask the customer something at once (the others are told through the outbox).
ASKS_CUSTOMER = frozenset({Outcome.NEEDS_CONTACT, Outcome.NEEDS_DEPARTMENT, Outcome.NEEDS_CHOICE,
                           Outcome.TICKET_CLOSED})


async def _lang(tickets: TicketService, message_or_query: Message | CallbackQuery) -> str:
    user = tg_user(message_or_query)
    return (await tickets.customer_language(user.tg_user_id)) or (
        await tickets.ensure_customer(user)).language


async def start(message: Message, command: CommandObject, tickets: TicketService,
                state: FSMContext) -> None:
    customer = await tickets.ensure_customer(tg_user(message))
    lang = customer.language
    await message.answer(gettext(lang, "customer.greeting", name=render.escape(
        customer.full_name)), reply_markup=keyboards.main_menu(lang))
    # Deep links: t.me/<bot>?start=new opens the new-request dialogue at once;
    # ?start=<department id> also files the request under that department.
    payload = (command.args or "").strip()
    departments = {d.remote_id for d in await tickets.departments()}
    if payload.lower() in {"new", "request", "ticket"} or payload in departments:
        await state.set_state(NewRequest.composing)
        await state.update_data(department_id=payload if payload in departments else None)
        await message.answer(gettext(lang, "customer.new_prompt"))


async def menu(message: Message, tickets: TicketService) -> None:
    lang = await _lang(tickets, message)
    await message.answer(gettext(lang, "customer.menu"), reply_markup=keyboards.main_menu(lang))


async def help_(message: Message, tickets: TicketService) -> None:
    await message.answer(gettext(await _lang(tickets, message), "customer.help"))


async def new_request(message: Message, tickets: TicketService, state: FSMContext) -> None:
    await state.set_state(NewRequest.composing)
    await message.answer(gettext(await _lang(tickets, message), "customer.new_prompt"))


async def my_tickets(message: Message, tickets: TicketService) -> None:
    lang = await _lang(tickets, message)
    page = await tickets.customer_tickets(tg_user(message), 0)
    key = "customer.list_title" if page.items else "customer.list_empty"
    await message.answer(gettext(lang, key), reply_markup=keyboards.ticket_list(lang, page))


async def switch_language(message: Message, tickets: TicketService) -> None:
    await _toggle_language(message, tickets)


async def _toggle_language(event: Message | CallbackQuery, tickets: TicketService) -> None:
    user = tg_user(event)
    current = await _lang(tickets, event)
    new = LANGUAGES[(LANGUAGES.index(current) + 1) % len(LANGUAGES)]
    await tickets.set_customer_language(user, new)
    target = event.message if isinstance(event, CallbackQuery) else event
    if isinstance(target, Message):
        await target.answer(gettext(new, "customer.language_set"),
                            reply_markup=keyboards.main_menu(new))


async def on_menu(query: CallbackQuery, callback_data: MenuCb, tickets: TicketService,
                  state: FSMContext) -> None:
    lang = await _lang(tickets, query)
    await query.answer()
    if not isinstance(query.message, Message):
        return
    if callback_data.action == "new":
        await state.set_state(NewRequest.composing)
        await query.message.answer(gettext(lang, "customer.new_prompt"))
    elif callback_data.action == "list":
        page = await tickets.customer_tickets(tg_user(query), 0)
        key = "customer.list_title" if page.items else "customer.list_empty"
        await query.message.answer(gettext(lang, key),
                                   reply_markup=keyboards.ticket_list(lang, page))
    elif callback_data.action == "help":
        await query.message.answer(gettext(lang, "customer.help"))
    elif callback_data.action == "lang":
        await _toggle_language(query, tickets)


async def on_ticket(query: CallbackQuery, callback_data: CustomerCb, tickets: TicketService
                    ) -> None:
    lang = await _lang(tickets, query)
    user = tg_user(query)
    action = callback_data.action
    message = query.message if isinstance(query.message, Message) else None
    if action == "page":
        page = await tickets.customer_tickets(user, callback_data.value)
        await query.answer()
        if message:
            key = "customer.list_title" if page.items else "customer.list_empty"
            await message.edit_text(gettext(lang, key),
                                    reply_markup=keyboards.ticket_list(lang, page))
        return
    if action in {"place", "new"}:
        ticket = await tickets.place_draft(
            user, callback_data.value, callback_data.ticket_id if action == "place" else None)
        await query.answer(gettext(lang, "customer.placed", number=ticket.number))
        if message:
            await message.edit_text(gettext(lang, "customer.placed", number=ticket.number))
        return
    if action == "rate":
        await tickets.customer_ticket(user, callback_data.ticket_id, history=0)  # owner check
        await query.answer()
        if message:
            await message.answer(gettext(lang, "customer.rate_prompt"),
                                 reply_markup=keyboards.rating(callback_data.ticket_id, lang,
                                                               tickets.capabilities))
        return
    if action in {"close", "reopen"}:
        status = TicketStatus.CLOSED if action == "close" else TicketStatus.OPEN
        ticket = await tickets.customer_set_status(user, callback_data.ticket_id, status)
        await query.answer(gettext(lang, f"customer.you_{action}", number=ticket.number))
        if message:
            await _show_ticket(message, tickets, user_query=query, ticket_id=ticket.ticket_id,
                               lang=lang, edit=True)
        return
    if action == "write":
        summary, _ = await tickets.customer_ticket(user, callback_data.ticket_id, history=0)
        await query.answer()
        if message:
            await message.answer(gettext(lang, "customer.write_to", number=summary.number))
        return
    if action == "open" and message:
        await _show_ticket(message, tickets, user_query=query,
                           ticket_id=callback_data.ticket_id, lang=lang, edit=False)
        await query.answer()
        return
    await query.answer()


async def _show_ticket(message: Message, tickets: TicketService, *, user_query: CallbackQuery,
                       ticket_id: int, lang: str, edit: bool) -> None:
    summary, history = await tickets.customer_ticket(tg_user(user_query), ticket_id)
    lines = [
        f"<b>#{render.escape(summary.number)} {render.escape(summary.subject)}</b>",
        gettext(lang, "customer.ticket_status", status=gettext(lang, f"status.{summary.status}")),
    ]
    if history:
        lines.append("")
    for line in history:
        who = (gettext(lang, "customer.you") if line.author_kind == "customer"
               else render.escape(line.author_name or gettext(lang, "customer.support")))
        text = line.text if len(line.text) <= 400 else line.text[:400] + "…"
        files = f" 📎{line.files}" if line.files else ""
        lines.append(f"<b>{who}</b> · {render.short_when(line.created_at)}{files}\n"
                     f"{render.escape(text)}")
    body = "\n".join(lines)[: render.TELEGRAM_TEXT_LIMIT]
    markup = keyboards.customer_ticket(lang, summary, tickets.capabilities)
    if edit:
        await message.edit_text(body, reply_markup=markup)
    else:
        await message.answer(body, reply_markup=markup)


async def on_message(message: Message, tickets: TicketService, state: FSMContext) -> None:
    current = await state.get_state()
    if current == ContactNeeded.waiting.state and message.text and EMAIL.match(
            message.text.strip()):
        result = await tickets.save_contact(tg_user(message), email=message.text.strip())
        await state.clear()
        await _answer_outcome(message, tickets, result)
        return
    force_new = current == NewRequest.composing.state
    department_id = (await state.get_data()).get("department_id") if force_new else None
    data = incoming(message)
    result = await tickets.handle_customer_message(data, force_new=force_new,
                                                   department_id=department_id)
    if force_new and result.outcome != Outcome.DUPLICATE:
        await state.clear()
    if result.outcome == Outcome.NEEDS_CONTACT:
        await state.set_state(ContactNeeded.waiting)
    await _answer_outcome(message, tickets, result)
    too_big = [f.file_name for f in data.files if (f.size or 0) > BOT_API_DOWNLOAD_LIMIT]
    if too_big and tickets.uploads_files and result.outcome != Outcome.DUPLICATE:
        # Agents still see it in Telegram; the helpdesk cannot get it through the Bot API.
        await message.reply(gettext(await _lang(tickets, message), "customer.file_too_big",
                                    name=render.escape(", ".join(too_big))))


async def on_contact(message: Message, tickets: TicketService, state: FSMContext) -> None:
    lang = await _lang(tickets, message)
    contact = message.contact
    assert contact is not None and message.from_user is not None
    if contact.user_id != message.from_user.id:
        await message.reply(gettext(lang, "customer.own_contact_only"))
        return
    result = await tickets.save_contact(tg_user(message), phone=contact.phone_number)
    await state.clear()
    await _answer_outcome(message, tickets, result)


async def on_department(query: CallbackQuery, callback_data: DepartmentCb,
                        tickets: TicketService) -> None:
    lang = await _lang(tickets, query)
    ticket = await tickets.place_draft(tg_user(query), callback_data.draft_id, None,
                                       callback_data.department_id)
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.edit_text(gettext(lang, "customer.placed", number=ticket.number))


async def _answer_outcome(message: Message, tickets: TicketService, result: CustomerResult
                          ) -> None:
    contact_taken = message.contact and result.outcome in (Outcome.CREATED, Outcome.CONTACT_SAVED)
    if result.outcome not in ASKS_CUSTOMER and not contact_taken:
        return  # the common case (a message added to a ticket) costs no language lookup
    lang = await _lang(tickets, message)
    if result.outcome == Outcome.NEEDS_CONTACT:
        await message.reply(gettext(lang, "customer.need_contact"),
                            reply_markup=keyboards.share_contact(lang))
        return
    if result.outcome == Outcome.NEEDS_DEPARTMENT:
        assert result.draft_message_id is not None
        await message.reply(gettext(lang, "customer.choose_department"),
                            reply_markup=keyboards.departments(result.draft_message_id,
                                                               result.departments))
        return
    if result.outcome in (Outcome.CREATED, Outcome.CONTACT_SAVED) and message.contact:
        await message.answer(gettext(lang, "customer.contact_saved"),
                             reply_markup=ReplyKeyboardRemove())
        return
    if result.outcome in (Outcome.NEEDS_CHOICE, Outcome.TICKET_CLOSED):
        assert result.draft_message_id is not None
        if result.outcome == Outcome.TICKET_CLOSED:
            closed: TicketSummary | None = result.ticket
            text = gettext(lang, "customer.replied_to_closed",
                           number=closed.number if closed else "")
        else:
            text = gettext(lang, "customer.choose_ticket")
        await message.reply(text, reply_markup=keyboards.choose_ticket(
            lang, result.draft_message_id, result.choices))


async def unsupported(message: Message, tickets: TicketService) -> None:
    await message.reply(gettext(await _lang(tickets, message), "customer.unsupported"))


async def agent_command_in_private(message: Message, bot: Bot, agent_access: AgentAccess,
                                   tickets: TicketService) -> None:
    lang = await _lang(tickets, message)
    if await agent_access.is_agent(bot, message.from_user):
        await message.answer(gettext(lang, "agent.use_in_topic"))
    else:
        await message.answer(gettext(lang, "errors.agents_only"))


async def blocked(event: ChatMemberUpdated, tickets: TicketService) -> None:
    await tickets.set_customer_blocked(event.from_user.id, True)


async def unblocked(event: ChatMemberUpdated, tickets: TicketService) -> None:
    await tickets.set_customer_blocked(event.from_user.id, False)


def setup() -> Router:
    router = Router(name=__name__)
    router.message.filter(F.chat.type == "private")
    router.callback_query.filter(F.message.chat.type == "private")
    router.my_chat_member.filter(F.chat.type == "private")
    router.message.middleware(KeepBannedOut())
    router.callback_query.middleware(KeepBannedOut())

    router.message.register(start, CommandStart())
    router.message.register(menu, Command("menu"))
    router.message.register(help_, Command("help"))
    router.message.register(new_request, Command("new"))
    router.message.register(my_tickets, Command("tickets", "my"))
    router.message.register(switch_language, Command("language", "lang"))
    router.message.register(agent_command_in_private, Command(*AGENT_COMMANDS))
    router.message.register(on_contact, F.contact)
    router.message.register(on_message, is_supported)
    router.message.register(unsupported)
    router.callback_query.register(on_menu, MenuCb.filter())
    router.callback_query.register(on_ticket, CustomerCb.filter())
    router.callback_query.register(on_department, DepartmentCb.filter())
    router.my_chat_member.register(blocked, ChatMemberUpdatedFilter(member_status_changed=KICKED))
    router.my_chat_member.register(unblocked,
                                   ChatMemberUpdatedFilter(member_status_changed=MEMBER))
    return router
