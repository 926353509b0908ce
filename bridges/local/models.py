"""Tables of the built-in local desk, where the database is the helpdesk.

They live in their own metadata (`LocalDeskBase.metadata`), apart from the
bot's tables, so that the local desk stays a provider like any other: the
bot never reads these rows, it goes through the bridge. Types are kept
portable between SQLite and PostgreSQL; the project's Alembic migration
creates the tables from this metadata.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bridges.base import AuthorKind, Priority, TicketStatus

# Constraint names are spelled out so that migrations can drop or alter them
# by name on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT on PostgreSQL; on SQLite only an INTEGER primary key is the
# autoincrementing rowid, so the variant keeps ids generated there too.
RowId = BigInteger().with_variant(Integer(), "sqlite")
# ...and AUTOINCREMENT stops SQLite from handing out the id of a deleted last
# row again: ticket numbers, article ids and the poll cursor never repeat.
_NEVER_REUSE_IDS = {"sqlite_autoincrement": True}

# Column widths, shared with the bridge, which clips names to them and
# refuses over-long refs and keys (PostgreSQL would reject them; SQLite
# would silently store them).
NAME_LENGTH = 255
REF_LENGTH = 128
KEY_LENGTH = 255
DEPARTMENT_ID_LENGTH = 64


class LocalEventKind(enum.StrEnum):
    TICKET_CHANGED = "ticket_changed"
    MESSAGE_ADDED = "message_added"


def _one_of(column: str, values: type[enum.StrEnum]) -> CheckConstraint:
    allowed = ", ".join(f"'{member.value}'" for member in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=column)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class LocalDeskBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: DateTime(timezone=True)}


class LocalTicket(LocalDeskBase):
    __tablename__ = "local_tickets"
    __table_args__ = (
        _one_of("status", TicketStatus),
        _one_of("priority", Priority),
        _NEVER_REUSE_IDS,
    )

    # Also the ticket number people see.
    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(NAME_LENGTH))
    customer_ref: Mapped[str] = mapped_column(String(REF_LENGTH))
    customer_name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    status: Mapped[str] = mapped_column(String(16), default=TicketStatus.OPEN.value)
    priority: Mapped[str] = mapped_column(String(16), default=Priority.NORMAL.value)
    assignee_ref: Mapped[str | None] = mapped_column(String(REF_LENGTH))
    assignee_name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    department_id: Mapped[str | None] = mapped_column(String(DEPARTMENT_ID_LENGTH))
    idempotency_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=_utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=_utc_now)


class LocalMessage(LocalDeskBase):
    __tablename__ = "local_messages"
    __table_args__ = (_one_of("author_kind", AuthorKind), _NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(RowId, ForeignKey("local_tickets.id"), index=True)
    author_kind: Mapped[str] = mapped_column(String(16))
    # The bot's opaque ref of the author (customer_ref or agent_ref).
    author_ref: Mapped[str | None] = mapped_column(String(REF_LENGTH))
    author_name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    text: Mapped[str] = mapped_column(Text)
    # File metadata only (file_name, mime_type, size, kind, ref, url): the
    # local desk keeps the sender's opaque `ref` and hands it back, never bytes.
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    idempotency_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=_utc_now)


class LocalEvent(LocalDeskBase):
    """The change feed. `id` is the poll cursor: the bridge allocates ids in
    commit order, so a reader never skips an event that commits late."""

    __tablename__ = "local_events"
    __table_args__ = (_one_of("kind", LocalEventKind), _NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(RowId, ForeignKey("local_tickets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[int | None] = mapped_column(RowId, ForeignKey("local_messages.id"))
    # The idempotency key of the call that caused the event.
    origin_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    created_at: Mapped[datetime] = mapped_column(default=_utc_now)


class LocalAgent(LocalDeskBase):
    """A local desk account; linking to it chooses the name replies carry."""

    __tablename__ = "local_agents"
    __table_args__ = _NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    login: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    full_name: Mapped[str] = mapped_column(String(NAME_LENGTH))


class LocalKbArticle(LocalDeskBase):
    __tablename__ = "local_kb_articles"
    __table_args__ = _NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(String(NAME_LENGTH))
    text: Mapped[str] = mapped_column(Text)
    # casefold()ed copies for search: SQLite's lower() and PostgreSQL's under
    # the C locale only fold ASCII, and customers search in Russian too.
    title_folded: Mapped[str] = mapped_column(Text)
    text_folded: Mapped[str] = mapped_column(Text)
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=_utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=_utc_now)
