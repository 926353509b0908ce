"""The agents' supergroup: ticket topics, cards and commands."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message, TelegramObject

from bot import keyboards
from bot.callbacks import AgentCb
from bot.filters import InAgentChat, IsAgent
from bot.handlers.convert import incoming, is_supported, tg_user
from bot.i18n import gettext, pick_language
from bot.services import render
from bot.services.errors import UserFacingError
from bot.services.tickets import TicketService
from bot.telegram.agent_chat import AgentChat
from bridges.base import Capability, Priority, TicketStatus

NOTE_PREFIX = "#"


class NoteInput(StatesGroup):
    waiting = State()


async def _ticket_here(message: Message, tickets: TicketService, agent_chat: AgentChat) -> int:
    ticket_id = await _ticket_of(message, tickets, agent_chat)
    if ticket_id is None:
        raise UserFacingError("agent.not_in_ticket")
    return ticket_id


async def _ticket_of(message: Message, tickets: TicketService, agent_chat: AgentChat
                     ) -> int | None:
    reply = message.reply_to_message
    from_bot = reply is not None and reply.from_user is not None and reply.from_user.is_bot
    return await tickets.ticket_for_agent_message(
        message.chat.id,
        message.message_thread_id if message.is_topic_message else None,
        reply.message_id if reply is not None else None,
        forum=agent_chat.forum,
        reply_text=(reply.text or reply.caption) if reply is not None and from_bot else None,
    )


async def take(message: Message, tickets: TicketService, agent_chat: AgentChat) -> None:
    ticket = await tickets.take(tg_user(message), await _ticket_here(message, tickets,
                                                                      agent_chat))
    await message.reply(gettext(agent_chat.language, "agent.taken", number=ticket.number))


async def assign(message: Message, command: CommandObject, tickets: TicketService,
                 agent_chat: AgentChat) -> None:
    if not command.args:
        raise UserFacingError("agent.usage_assign")
    ticket_id = await _ticket_here(message, tickets, agent_chat)
    await tickets.assign(tg_user(message), ticket_id, command.args.split()[0])


async def close(message: Message, tickets: TicketService, agent_chat: AgentChat) -> None:
    await tickets.set_status(tg_user(message), await _ticket_here(message, tickets, agent_chat),
                             TicketStatus.CLOSED)


async def reopen(message: Message, tickets: TicketService, agent_chat: AgentChat) -> None:
    await tickets.set_status(tg_user(message), await _ticket_here(message, tickets, agent_chat),
                             TicketStatus.OPEN)


async def priority(message: Message, command: CommandObject, tickets: TicketService,
                   agent_chat: AgentChat) -> None:
    value = (command.args or "").strip().lower()
    if value not in {p.value for p in Priority}:
        raise UserFacingError("agent.usage_priority")
    ticket_id = await _ticket_here(message, tickets, agent_chat)
    await tickets.set_priority(tg_user(message), ticket_id, Priority(value))


async def note(message: Message, command: CommandObject, tickets: TicketService,
               agent_chat: AgentChat) -> None:
    if not command.args and not message.photo and not message.document:
        raise UserFacingError("agent.usage_note")
    ticket_id = await _ticket_here(message, tickets, agent_chat)
    await tickets.agent_message(tg_user(message), ticket_id,
                                incoming(message, text=command.args or ""), note=True)


async def refer(message: Message, command: CommandObject, tickets: TicketService,
                agent_chat: AgentChat) -> None:
    if not command.args:
        raise UserFacingError("agent.usage_refer")
    ticket_id = await _ticket_here(message, tickets, agent_chat)
    await tickets.refer(tg_user(message), ticket_id, command.args.strip())


async def queue(message: Message, tickets: TicketService, agent_chat: AgentChat) -> None:
    lang = agent_chat.language
    items = await tickets.queue()
    if not items:
        await message.reply(gettext(lang, "agent.queue_empty"))
        return
    lines = [gettext(lang, "agent.queue_title", count=len(items))]
    for item in items:
        label = f"#{render.escape(item.number)} {render.escape(item.subject)}"
        if agent_chat.forum and item.tg_topic_id and str(agent_chat.chat_id).startswith("-100"):
            link = f"https://t.me/c/{str(agent_chat.chat_id)[4:]}/{item.tg_topic_id}"
            label = f'<a href="{link}">{label}</a>'
        who = render.escape(item.assignee_name) if item.assignee_name else "—"
        lines.append(f"{keyboards.STATUS_ICON.get(item.status, '')} {label} · "
                     f"{render.escape(item.customer_name)} · {who}")
    await message.reply("\n".join(lines)[: render.TELEGRAM_TEXT_LIMIT])


async def link(message: Message, command: CommandObject, tickets: TicketService) -> None:
    lang = pick_language(message.from_user.language_code if message.from_user else None)
    if not command.args:
        raise UserFacingError("agent.usage_link")
    login, _, secret = command.args.strip().partition(" ")
    if secret and message.chat.type != "private":
        # A password typed in the group: take it off the screen at once.
        with contextlib.suppress(TelegramAPIError):
            await message.delete()
        raise UserFacingError("agent.link_password_private")
    name = await tickets.link_agent(tg_user(message), login, secret.strip() or None)
    if secret:
        with contextlib.suppress(TelegramAPIError):
            await message.delete()  # the bot keeps what the sign-in returned, not this
    await message.reply(gettext(lang, "agent.linked", name=render.escape(name)))


async def agent_help(message: Message, agent_chat: AgentChat) -> None:
    await message.reply(gettext(agent_chat.language, "agent.help"))


async def unknown_command(message: Message, bot: Bot, agent_chat: AgentChat) -> None:
    """A command from an agent that no handler took: say it is unknown and
    show what there is (a command addressed to another bot is left alone)."""
    word = (message.text or "").split(maxsplit=1)[0]
    name, _, addressee = word.partition("@")
    if addressee and addressee.lower() != ((await bot.me()).username or "").lower():
        return
    lang = agent_chat.language
    await message.reply(gettext(lang, "agent.unknown_command", command=render.escape(name))
                        + "\n\n" + gettext(lang, "agent.help"))


async def reply_or_note(message: Message, tickets: TicketService, agent_chat: AgentChat,
                        state: FSMContext, told_read_only: set[int]) -> None:
    """Anything an agent writes in a ticket's topic goes to the customer; a
    leading `#` (or the card's Note button) makes it an internal note."""
    ticket_id = await _ticket_of(message, tickets, agent_chat)
    if ticket_id is None:
        return  # agents talking among themselves
    text = message.text or message.caption or ""
    is_note = await state.get_state() == NoteInput.waiting.state
    data = incoming(message)
    if text.startswith(NOTE_PREFIX):
        is_note = True
        stripped = text[len(NOTE_PREFIX):].lstrip()
        data = incoming(message, text=stripped, html=None)
    if is_note:
        await state.clear()
    needed = Capability.NOTES if is_note else Capability.REPLY_AS_AGENT
    if needed not in tickets.capabilities:
        # A customer-side helpdesk (Plusofon...) takes no replies from the
        # company's staff: what they write stays among them. Said once per ticket.
        if ticket_id not in told_read_only:
            told_read_only.add(ticket_id)
            await message.reply(gettext(agent_chat.language, "agent.topic_read_only"))
        return
    await tickets.agent_message(tg_user(message), ticket_id, data, note=is_note)


async def on_card(query: CallbackQuery, callback_data: AgentCb, tickets: TicketService,
                  agent_chat: AgentChat, state: FSMContext) -> None:
    lang = agent_chat.language
    user = tg_user(query)
    ticket_id = callback_data.ticket_id
    action = callback_data.action
    message = query.message if isinstance(query.message, Message) else None
    if action == "take":
        await tickets.take(user, ticket_id)
        await query.answer(gettext(lang, "agent.taken_short"))
    elif action in {"close", "reopen"}:
        status = TicketStatus.CLOSED if action == "close" else TicketStatus.OPEN
        await tickets.set_status(user, ticket_id, status)
        await query.answer()
    elif action == "prio" and message:
        await message.edit_reply_markup(reply_markup=keyboards.priorities(lang, ticket_id))
        await query.answer()
    elif action == "setprio":
        if callback_data.value not in {p.value for p in Priority}:
            raise UserFacingError("errors.bad_request")
        await tickets.set_priority(user, ticket_id, Priority(callback_data.value))
        await query.answer(gettext(lang, f"priority.{callback_data.value}"))
    elif action == "back" and message:
        summary = await tickets.ticket_summary(ticket_id)
        await message.edit_reply_markup(reply_markup=keyboards.agent_card(
            lang, ticket_id, summary.status, tickets.capabilities))
        await query.answer()
    elif action == "note":
        await state.set_state(NoteInput.waiting)
        await query.answer(gettext(lang, "agent.note_prompt"), show_alert=True)
    else:
        await query.answer()


async def refuse_message(message: Message, tickets: TicketService, agent_chat: AgentChat
                         ) -> None:
    """Not an agent (the allow-list excludes them), or not in the agent chat."""
    lang = agent_chat.language if message.chat.id == agent_chat.chat_id else pick_language(
        message.from_user.language_code if message.from_user else None)
    await message.reply(gettext(lang, "errors.agents_only"))


async def refuse_callback(query: CallbackQuery, agent_chat: AgentChat) -> None:
    lang = pick_language(query.from_user.language_code)
    await query.answer(gettext(lang, "errors.agents_only"), show_alert=True)


async def agent_chat_other(message: Message) -> None:
    """Messages in the agent chat from people the allow-list excludes: ignored
    unless they are commands (those get a refusal above)."""


class RememberAgents(BaseMiddleware):
    """Records every agent who acts in the agent chat, so `/assign @username`
    can find them (the Bot API cannot look a username up)."""

    def __init__(self) -> None:
        self._seen: set[tuple[int, str, str | None]] = set()

    async def __call__(self, handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
                       event: TelegramObject, data: dict[str, Any]) -> Any:
        user = data.get("event_from_user")
        tickets: TicketService = data["tickets"]
        if user is not None and (user.id, user.full_name, user.username) not in self._seen:
            await tickets.remember_agent(tg_user(user))
            self._seen.add((user.id, user.full_name, user.username))
        return await handler(event, data)


def setup() -> Router:
    router = Router(name=__name__)

    # In the agent chat, for agents.
    group = Router(name=f"{__name__}.group")
    group.message.filter(InAgentChat(), IsAgent())
    group.callback_query.filter(InAgentChat(), IsAgent())
    group.message.middleware(RememberAgents())
    group.callback_query.middleware(RememberAgents())
    group.message.register(take, Command("take"))
    group.message.register(assign, Command("assign"))
    group.message.register(close, Command("close"))
    group.message.register(reopen, Command("reopen"))
    group.message.register(priority, Command("priority"))
    group.message.register(note, Command("note"))
    group.message.register(refer, Command("refer"))
    group.message.register(queue, Command("tickets", "queue"))
    group.message.register(link, Command("link"))
    group.message.register(agent_help, Command("help", "start"))
    group.message.register(reply_or_note, is_supported, ~F.text.startswith("/"))
    group.message.register(unknown_command, F.text.startswith("/"))
    group.callback_query.register(on_card, AgentCb.filter())

    # Agents' own private chat with the bot: account linking (stats: bot.handlers.stats).
    private = Router(name=f"{__name__}.private")
    private.message.filter(F.chat.type == "private")
    # The command first: customers' messages never cost a getChatMember call.
    private.message.register(link, Command("link"), IsAgent())

    # Everyone else who tries agent things.
    refusals = Router(name=f"{__name__}.refusals")
    refusals.message.register(refuse_message, InAgentChat(), F.text.startswith("/"))
    refusals.message.register(agent_chat_other, InAgentChat())
    refusals.message.register(refuse_message, F.chat.type == "private",
                              Command("link", "stats"))
    refusals.callback_query.register(refuse_callback, AgentCb.filter())

    router.include_routers(group, private, refusals)
    return router
