"""Plain data passed between handlers and services (no aiogram, no ORM)."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from bridges.base import Department


@dataclass(frozen=True, slots=True)
class TgUser:
    tg_user_id: int
    full_name: str
    username: str | None = None
    language_code: str | None = None


@dataclass(frozen=True, slots=True)
class IncomingFile:
    kind: str  # photo | document | voice | video | audio | animation | video_note
    tg_file_id: str
    file_name: str
    mime_type: str | None = None
    size: int | None = None


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A Telegram message as the services need it."""

    tg_chat_id: int
    tg_message_id: int
    sender: TgUser
    text: str = ""
    html: str | None = None  # the sender's formatting as Telegram HTML
    files: Sequence[IncomingFile] = ()
    tg_media_group_id: str | None = None
    reply_to_tg_message_id: int | None = None
    # The text of the replied-to message when the bot wrote it (names "#<number>").
    reply_to_bot_text: str | None = None
    tg_thread_id: int | None = None


class Outcome(enum.StrEnum):
    DUPLICATE = "duplicate"  # an update Telegram handed out again
    CREATED = "created"  # a new ticket was opened
    APPENDED = "appended"  # added to an existing ticket
    ALBUM_PART = "album_part"  # joined the message of its album
    NEEDS_CHOICE = "needs_choice"  # several open tickets: the customer picks
    TICKET_CLOSED = "ticket_closed"  # replied to a closed ticket's notification
    NEEDS_CONTACT = "needs_contact"  # the provider needs a phone or e-mail first
    NEEDS_DEPARTMENT = "needs_department"  # the customer picks a department first
    CONTACT_SAVED = "contact_saved"  # a contact with nothing waiting for it


@dataclass(frozen=True, slots=True)
class TicketSummary:
    ticket_id: int
    number: str
    subject: str
    status: str
    priority: str
    customer_name: str
    assignee_name: str | None
    created_at: datetime
    updated_at: datetime
    rating: int | None = None
    tg_topic_id: int | None = None


@dataclass(frozen=True, slots=True)
class CustomerResult:
    outcome: Outcome
    ticket: TicketSummary | None = None
    draft_message_id: int | None = None
    choices: Sequence[TicketSummary] = field(default_factory=tuple)
    departments: Sequence[Department] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class HistoryLine:
    author_kind: str
    author_name: str | None
    text: str
    created_at: datetime
    files: int = 0


@dataclass(frozen=True, slots=True)
class Page:
    items: Sequence[TicketSummary]
    page: int
    pages: int
