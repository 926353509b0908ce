"""ORM models of the bot's durable state.

Only the database layer uses these; repositories hand plain objects out.
Every cross-boundary id carries its namespace (`tg_*` for Telegram,
`remote_*` for the provider); unique constraints make every import and every
delivery idempotent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY.
IdType = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    tg_user_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    full_name: Mapped[str] = mapped_column(String(256))
    username: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8), default="en")
    phone: Mapped[str | None] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(256))
    remote_customer_id: Mapped[str | None] = mapped_column(String(128))
    # The ticket later messages go to when the customer has several open.
    selected_ticket_id: Mapped[int | None] = mapped_column(IdType)
    blocked_at: Mapped[datetime | None]
    # Flood control (bot.services.flood): when the customer was last asked to slow down.
    slow_down_told_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Ban(Base):
    """A Telegram user whose messages the bot neither relays nor turns into
    tickets (`/ban`). Keyed by the Telegram id, so someone who never wrote can
    be banned too; `told_at` is when they got the one polite notice."""

    __tablename__ = "bans"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    tg_user_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    reason: Mapped[str | None] = mapped_column(Text)
    banned_by: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    told_at: Mapped[datetime | None]


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    tg_user_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    full_name: Mapped[str] = mapped_column(String(256))
    username: Mapped[str | None] = mapped_column(String(64), index=True)
    # The provider account the agent linked with /link.
    remote_agent_id: Mapped[str | None] = mapped_column(String(128))
    remote_login: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (UniqueConstraint("provider", "remote_ticket_id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    remote_ticket_id: Mapped[str | None] = mapped_column(String(128))
    number: Mapped[str | None] = mapped_column(String(64))
    remote_url: Mapped[str | None] = mapped_column(String(512))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    subject: Mapped[str] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    department_id: Mapped[str | None] = mapped_column(String(128))
    assignee_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    assignee_name: Mapped[str | None] = mapped_column(String(256))
    tg_topic_id: Mapped[int | None] = mapped_column(BigInteger)
    tg_card_message_id: Mapped[int | None] = mapped_column(BigInteger)
    rating: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]
    first_reply_at: Mapped[datetime | None]
    # Satisfaction: when the customer rated (`rating`, 1–5) and their optional comment.
    rated_at: Mapped[datetime | None]
    rating_comment: Mapped[str | None] = mapped_column(Text)
    # SLA (bot.services.sla): since when the customer waits for an agent's
    # reply, when it is due, when the reminder for that went out (one per
    # crossing), and when a ticket waiting for the customer closes by itself.
    # Deadlines are stored, not computed, so the card can show them and the
    # job finds what is due with an index instead of scanning open tickets.
    awaiting_agent_since: Mapped[datetime | None]
    reply_due_at: Mapped[datetime | None] = mapped_column(index=True)
    reply_reminded_at: Mapped[datetime | None]
    autoclose_at: Mapped[datetime | None] = mapped_column(index=True)
    # What the ticket's forum topic shows now (bot.outbox.telegram.topic_state):
    # the status its name carries, whether it is closed, whether the card is pinned.
    tg_topic_status: Mapped[str | None] = mapped_column(String(16))
    tg_topic_closed: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    tg_card_pinned: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class Message(Base):
    """One message of a ticket, whichever side wrote it. A customer message
    with no ticket yet is a draft waiting for the customer to pick one."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("ticket_id", "remote_message_id"),
        Index("ix_messages_media_group", "customer_id", "tg_media_group_id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    author_kind: Mapped[str] = mapped_column(String(16))
    author_name: Mapped[str | None] = mapped_column(String(256))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    text: Mapped[str] = mapped_column(Text, default="")
    # Telegram-safe HTML (sanitised when it came from a helpdesk).
    html: Mapped[str | None] = mapped_column(Text)
    tg_media_group_id: Mapped[str | None] = mapped_column(String(64))
    remote_message_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set when the customer edited the message in Telegram (its text is the new one).
    edited_at: Mapped[datetime | None]
    # Flood control: a customer above CUSTOMER_MESSAGES_PER_MINUTE has their
    # messages merged into this one until `merged_until`; `parts` counts them.
    merged_until: Mapped[datetime | None]
    parts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class Attachment(Base):
    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    file_name: Mapped[str] = mapped_column(String(256))
    mime_type: Mapped[str | None] = mapped_column(String(128))
    size: Mapped[int | None] = mapped_column(BigInteger)
    tg_file_id: Mapped[str | None] = mapped_column(String(256))
    remote_url: Mapped[str | None] = mapped_column(Text)
    remote_ref: Mapped[str | None] = mapped_column(String(256))


class TgLink(Base):
    """Maps a Telegram message (one the bot received or sent) to its ticket
    and message. The unique key is what recognises an update Telegram hands
    out again after a restart."""

    __tablename__ = "tg_links"
    __table_args__ = (UniqueConstraint("tg_chat_id", "tg_message_id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    tg_chat_id: Mapped[int] = mapped_column(BigInteger)
    tg_message_id: Mapped[int] = mapped_column(BigInteger)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), index=True)
    direction: Mapped[str] = mapped_column(String(8))  # "in" | "out"


class PollCursor(Base):
    __tablename__ = "poll_cursors"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(Text)
    last_success_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxItem(Base):
    """A side effect toward Telegram or the provider, written in the same
    transaction as the state change that caused it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_lane", "lane", "status", "id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    # Rows of one lane are delivered one at a time, in id order.
    lane: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    # Which agent-chat row the group's budget serves first (bot.telegram.pacer.SendPriority).
    priority: Mapped[int] = mapped_column(SmallInteger, default=1, server_default="1")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]


class CannedReply(Base):
    """A reply agents insert with inline mode (`@bot <query>`), managed with
    `/canned`. With a bridge that stores articles (the local desk), it is also
    written to the helpdesk's knowledge base: `remote_article_id` is that
    article, so searches show it once."""

    __tablename__ = "canned_replies"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    title: Mapped[str] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text)
    # Public replies double as customer-visible knowledge-base articles.
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    remote_article_id: Mapped[str | None] = mapped_column(String(128))
    created_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    # How often agents picked it (chosen_inline_result); the most used come first.
    use_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BotState(Base):
    """What the bot learnt about its own set-up and must keep across restarts
    (e.g. the agent chat's new id after Telegram migrated the group)."""

    __tablename__ = "bot_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
