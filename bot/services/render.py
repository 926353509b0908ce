"""Telegram HTML for tickets: cards, topic names, mirrored messages.

Everything from people or helpdesks is escaped here or was sanitised on the
way in; these functions only add the bot's own markup.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from bot.db.models import Customer, Message, Ticket
from bot.i18n import gettext
from bot.services.splitting import split_html

TELEGRAM_TEXT_LIMIT = 4096
TELEGRAM_CAPTION_LIMIT = 1024
TOPIC_NAME_LIMIT = 128
CARD_EXCERPT_LIMIT = 2500
RATING_COMMENT_LIMIT = 300

AUTHOR_ICON = {"customer": "👤", "agent": "🎧", "note": "📝", "system": "ℹ️"}

# The zone of every date people read (TIMEZONE); set once at start by
# bot.app.build_app, before anything is rendered.
_zone: tzinfo = UTC


def set_timezone(name: str) -> None:
    global _zone
    _zone = UTC if name.upper() == "UTC" else ZoneInfo(name)


def timezone() -> tzinfo:
    return _zone


def local(moment: datetime) -> datetime:
    """`moment` (stored in UTC) in TIMEZONE."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(_zone)


def zone_name(moment: datetime) -> str:
    """How the zone is named next to a time: its abbreviation where it has a
    real one (UTC, MSK, CET), else its name (Asia/Almaty, whose abbreviation
    is just "+05")."""
    abbreviation = moment.tzname() or ""
    if abbreviation.isalpha():
        return abbreviation
    return str(getattr(_zone, "key", abbreviation))


def escape(text: str | None) -> str:
    return html.escape(text or "", quote=False)


def number(ticket: Ticket) -> str:
    return ticket.number or str(ticket.id)


# What a ticket's topic name starts with (bot.outbox.telegram keeps it current):
# the topic list shows each ticket's state at a glance. A custom-emoji topic
# icon would need ids from getForumTopicIconStickers, which differ per
# Telegram deployment; a name works in every forum.
TOPIC_STATUS_ICON = {"open": "🟢", "waiting": "🟡", "closed": "✅"}


def topic_name(ticket: Ticket, customer: Customer) -> str:
    icon = TOPIC_STATUS_ICON.get(ticket.status, "")
    name = f"{icon} #{number(ticket)} {ticket.subject} — {customer.full_name}".lstrip()
    return name if len(name) <= TOPIC_NAME_LIMIT else name[: TOPIC_NAME_LIMIT - 1] + "…"


def body_html(message: Message) -> str:
    return message.html if message.html else escape(message.text)


def when(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    shown = local(moment)
    return f"{shown:%Y-%m-%d %H:%M} {zone_name(shown)}"


def short_when(moment: datetime) -> str:
    """Day, month and time, for lines of a history."""
    shown = local(moment)
    return f"{shown:%d.%m %H:%M} {zone_name(shown)}"


def duration(span: timedelta | float, lang: str) -> str:
    """A span of time as people say it: "45 min", "2 h 05 min", "3 d 4 h"."""
    seconds = span.total_seconds() if isinstance(span, timedelta) else span
    minutes = max(0, round(seconds / 60))
    if minutes < 60:
        return gettext(lang, "time.minutes", minutes=minutes)
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return gettext(lang, "time.hours", hours=hours, minutes=f"{minutes:02d}")
    days, hours = divmod(hours, 24)
    return gettext(lang, "time.days", days=days, hours=hours)


def topic_url(chat_id: int, topic_id: int | None) -> str | None:
    """A link to a forum topic (only supergroups, whose ids start with -100, have one)."""
    if topic_id is None or not str(chat_id).startswith("-100"):
        return None
    return f"https://t.me/c/{str(chat_id)[4:]}/{topic_id}"


def sla_lines(ticket: Ticket, lang: str) -> list[str]:
    """The ticket's times and deadlines (bot.services.sla stores them)."""
    lines: list[str] = []
    if ticket.first_reply_at is not None:
        lines.append(gettext(lang, "card.first_reply", at=when(ticket.first_reply_at),
                             after=duration(ticket.first_reply_at - ticket.created_at, lang)))
    if ticket.status == "open" and ticket.awaiting_agent_since is not None:
        key = "card.waiting_first" if ticket.first_reply_at is None else "card.waiting_next"
        lines.append(gettext(lang, key, since=when(ticket.awaiting_agent_since)))
        if ticket.reply_due_at is not None:
            limit = duration(ticket.reply_due_at - ticket.awaiting_agent_since, lang)
            lines.append(gettext(lang, "card.reply_due", due=when(ticket.reply_due_at),
                                 limit=limit))
    if ticket.status == "waiting" and ticket.autoclose_at is not None:
        lines.append(gettext(lang, "card.autoclose", at=when(ticket.autoclose_at)))
    if ticket.status == "closed" and ticket.closed_at is not None:
        lines.append(gettext(lang, "card.closed", at=when(ticket.closed_at),
                             after=duration(ticket.closed_at - ticket.created_at, lang)))
    return lines


def card(ticket: Ticket, customer: Customer, opening: Message | None, lang: str) -> str:
    who = escape(customer.full_name)
    if customer.username:
        who += f" (@{escape(customer.username)})"
    lines = [
        f"🎫 <b>#{escape(number(ticket))} {escape(ticket.subject)}</b>",
        gettext(lang, "card.status", status=gettext(lang, f"card.status_{ticket.status}"),
                priority=gettext(lang, f"priority.{ticket.priority}")),
        gettext(lang, "card.customer", customer=who, tg_id=customer.tg_user_id),
        gettext(lang, "card.assignee",
                assignee=escape(ticket.assignee_name) or gettext(lang, "card.nobody")),
        gettext(lang, "card.created", created=when(ticket.created_at)),
        *sla_lines(ticket, lang),
    ]
    if customer.blocked_at is not None:
        lines.append(gettext(lang, "card.blocked"))
    if ticket.rating is not None:
        lines.append(gettext(lang, "card.rating", stars="⭐" * ticket.rating))
        if ticket.rating_comment:
            comment = ticket.rating_comment
            if len(comment) > RATING_COMMENT_LIMIT:
                comment = comment[:RATING_COMMENT_LIMIT] + "…"
            lines.append(gettext(lang, "card.rating_comment", comment=escape(comment)))
    if ticket.remote_url:
        lines.append(f'<a href="{html.escape(ticket.remote_url)}">'
                     f'{gettext(lang, "card.open_in_helpdesk")}</a>')
    if opening is not None and (opening.text or opening.html):
        excerpt = opening.text
        if len(excerpt) > CARD_EXCERPT_LIMIT:
            excerpt = excerpt[:CARD_EXCERPT_LIMIT] + "…"
        lines += ["", f"<blockquote>{escape(excerpt)}</blockquote>"]
    return "\n".join(lines)


def mirror(message: Message, lang: str, *, ticket_tag: str | None = None) -> str:
    """A ticket message as shown in the agent chat."""
    icon = AUTHOR_ICON.get(message.author_kind, "")
    head = f"{icon} <b>{escape(message.author_name or '')}</b>"
    if message.author_kind == "note":
        head += f" · <i>{gettext(lang, 'agent.note_label')}</i>"
    if message.edited_at is not None:
        head += f" · <i>{gettext(lang, 'agent.edited_label')}</i>"
    if ticket_tag:
        head = f"{escape(ticket_tag)} · {head}"
    body = body_html(message)
    return f"{head}\n{body}" if body else head


def to_customer(message: Message, ticket: Ticket, lang: str) -> str:
    head = gettext(lang, "customer.reply_header", name=escape(message.author_name or ""),
                   number=escape(number(ticket)))
    body = body_html(message)
    return f"{head}\n{body}" if body else head


def split_text(text_html: str, limit: int = TELEGRAM_TEXT_LIMIT) -> list[str]:
    """Split a long HTML text into messages Telegram accepts (see splitting.py)."""
    return split_html(text_html, limit)


def _strip_tags(text_html: str) -> str:
    from html.parser import HTMLParser

    parts: list[str] = []

    class _Text(HTMLParser):
        def handle_data(self, data: str) -> None:
            parts.append(data)

    parser = _Text(convert_charrefs=True)
    parser.feed(text_html)
    parser.close()
    return "".join(parts)
