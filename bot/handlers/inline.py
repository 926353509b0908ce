"""Inline mode: `@bot <query>` from any chat.

Agents (members of the agent chat, `AgentAccess.is_agent`) get matching
tickets, canned replies and knowledge-base articles; everyone else gets
public articles only. Answers are personal (`is_personal`) and paged with
`next_offset`.

How a picked result becomes a reply: the inserted result is an ordinary
message the agent sends *via* the bot. Sent in a ticket's topic, it reaches
the topic handler like anything else the agent types there
(`agents.reply_or_note`), which makes it the agent's reply to the customer,
once: the update is recorded by its (chat, message) id like every other.
`chosen_inline_result` is deliberately not used for that: it needs inline
feedback switched on in BotFather, it carries no chat (so no ticket), and it
would be a second path to the same reply. When feedback is on, it only counts
how often each canned reply is used (the most used are offered first).

A ticket result is different: it names another customer's ticket. Inserted in
a topic it becomes an internal note, never a reply to this customer.
"""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.types import (
    ChosenInlineResult,
    InlineQuery,
    InlineQueryResultArticle,
    InlineQueryResultsButton,
    InputTextMessageContent,
    Message,
)

from bot.filters import AgentAccess, InAgentChat, IsAgent
from bot.handlers.convert import incoming, tg_user
from bot.i18n import gettext, pick_language
from bot.services import render
from bot.services.knowledge import Canned, InlineItem, KnowledgeService, article_result_id
from bot.services.tickets import TicketService
from bot.services.types import TicketSummary
from bot.telegram.agent_chat import AgentChat
from bridges.base import Capability, KnowledgeArticle

PAGE_SIZE = 20  # Telegram allows 50 per answer; 20 keep the answer small and fast
MAX_OFFSET = 1000
# Tickets change by the minute; articles rarely.
AGENT_CACHE_SECONDS = 10
CUSTOMER_CACHE_SECONDS = 120
# How a ticket result's message starts, so the topic handler can tell it apart.
TICKET_MARK = "🎫"
DESCRIPTION_LIMIT = 120


def _offset(raw: str) -> int:
    """The offset comes back from the client: untrusted."""
    return min(int(raw), MAX_OFFSET) if raw.isascii() and raw.isdigit() else 0


def _one_line(text: str, limit: int = DESCRIPTION_LIMIT) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _ticket_result(item: TicketSummary, lang: str, agent_chat: AgentChat
                   ) -> InlineQueryResultArticle:
    status = gettext(lang, f"card.status_{item.status}")
    label = f"#{render.escape(item.number)} {render.escape(item.subject)}"
    url = render.topic_url(agent_chat.chat_id, item.tg_topic_id) if agent_chat.forum else None
    if url is not None:
        label = f'<a href="{url}">{label}</a>'
    text = f"{TICKET_MARK} {label}\n{status} · {render.escape(item.customer_name)}"
    who = item.assignee_name or gettext(lang, "card.nobody")
    return InlineQueryResultArticle(
        id=f"t:{item.ticket_id}",
        title=f"#{item.number} {item.subject}"[:200],
        description=_one_line(f"{status} · {item.customer_name} · {who}"),
        input_message_content=InputTextMessageContent(message_text=text, parse_mode="HTML"),
    )


def _canned_result(item: Canned, lang: str) -> InlineQueryResultArticle:
    title = f"📌 {item.title}"
    if not item.public:
        title += f" · {gettext(lang, 'canned.staff_only')}"
    return InlineQueryResultArticle(
        id=f"c:{item.canned_id}",
        title=title[:200],
        description=_one_line(item.text),
        input_message_content=InputTextMessageContent(message_text=render.escape(item.text),
                                                      parse_mode="HTML"),
    )


def _article_result(item: KnowledgeArticle) -> InlineQueryResultArticle:
    body = f"<b>{render.escape(item.title)}</b>\n\n{render.escape(item.text)}"
    if item.url:
        body += f'\n\n<a href="{render.escape(item.url)}">{render.escape(item.url)}</a>'
    if len(body) > render.TELEGRAM_TEXT_LIMIT:
        # Too long for one message: the beginning, and the link for the rest.
        body = render.escape(item.text[: render.TELEGRAM_TEXT_LIMIT - 600]) + "…"
        body = f"<b>{render.escape(item.title[:200])}</b>\n\n{body}"
        if item.url:
            body += f'\n\n<a href="{render.escape(item.url)}">{render.escape(item.url)}</a>'
    return InlineQueryResultArticle(
        id=article_result_id(item),
        title=f"📖 {item.title}"[:200],
        description=_one_line(item.text),
        input_message_content=InputTextMessageContent(message_text=body, parse_mode="HTML"),
    )


def _result(item: InlineItem, lang: str, agent_chat: AgentChat) -> InlineQueryResultArticle:
    if isinstance(item, TicketSummary):
        return _ticket_result(item, lang, agent_chat)
    if isinstance(item, Canned):
        return _canned_result(item, lang)
    return _article_result(item)


async def on_inline_query(inline_query: InlineQuery, bot: Bot, agent_access: AgentAccess,
                          knowledge: KnowledgeService, tickets: TicketService,
                          agent_chat: AgentChat) -> None:
    user = inline_query.from_user
    for_agent = await agent_access.is_agent(bot, user)
    lang = await tickets.customer_language(user.id) or pick_language(user.language_code)
    offset = _offset(inline_query.offset)
    page = await knowledge.search(inline_query.query, for_agent=for_agent, offset=offset,
                                  limit=PAGE_SIZE)
    button = None
    if not for_agent and offset == 0:
        # Nothing found (or not what they need): one tap to ask a person.
        button = InlineQueryResultsButton(text=gettext(lang, "inline.ask_support"),
                                          start_parameter="new")
    await inline_query.answer(
        [_result(item, lang, agent_chat) for item in page.items],
        cache_time=AGENT_CACHE_SECONDS if for_agent else CUSTOMER_CACHE_SECONDS,
        is_personal=True,
        next_offset=str(page.next_offset) if page.next_offset is not None else "",
        button=button,
    )


async def on_chosen(chosen: ChosenInlineResult, knowledge: KnowledgeService) -> None:
    """Only counts canned replies' use (see the module's docstring)."""
    kind, _, ref = chosen.result_id.partition(":")
    if kind == "c" and ref.isascii() and ref.isdigit():
        await knowledge.canned_used(int(ref))


def is_ticket_reference(message: Message, bot: Bot) -> bool:
    return (message.via_bot is not None and message.via_bot.id == bot.id
            and (message.text or "").startswith(TICKET_MARK))


async def ticket_reference(message: Message, tickets: TicketService, agent_chat: AgentChat
                           ) -> None:
    """A ticket result inserted in the agent chat: inside a ticket's topic it
    is an internal note (when the provider has notes); elsewhere agents are
    just pointing each other at a ticket."""
    if Capability.NOTES not in tickets.capabilities:
        return
    reply = message.reply_to_message
    ticket_id = await tickets.ticket_for_agent_message(
        message.chat.id, message.message_thread_id if message.is_topic_message else None,
        reply.message_id if reply is not None else None, forum=agent_chat.forum)
    if ticket_id is not None:
        await tickets.agent_message(tg_user(message), ticket_id, incoming(message), note=True)


def setup() -> Router:
    router = Router(name=__name__)
    router.inline_query.register(on_inline_query)
    router.chosen_inline_result.register(on_chosen)
    router.message.register(ticket_reference, F.via_bot, is_ticket_reference, InAgentChat(),
                            IsAgent())
    return router
