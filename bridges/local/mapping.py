"""Local desk rows ⇄ the normalised types of `bridges.base`.

The local desk knows people by the bot's own refs, so those refs double as
the "remote" ids of customers, authors and assignees.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bridges.base import (
    Attachment,
    AuthorKind,
    KnowledgeArticle,
    Priority,
    RemoteMessage,
    RemoteTicket,
    TicketStatus,
)
from bridges.local.models import LocalKbArticle, LocalMessage, LocalTicket

MAX_ROW_ID = 2**63 - 1  # BIGINT: a larger id cannot exist, and PostgreSQL would refuse it


def parse_row_id(value: str, *, allow_zero: bool = False) -> int | None:
    """A row id as the bridge's ids carry it; None when it cannot be one."""
    value = value.strip()
    if not (value.isascii() and value.isdigit()):
        return None
    number = int(value)
    lowest = 0 if allow_zero else 1
    return number if lowest <= number <= MAX_ROW_ID else None


def as_utc(value: datetime) -> datetime:
    """SQLite hands timestamps back naive; they were written in UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def ticket_from_row(row: LocalTicket) -> RemoteTicket:
    return RemoteTicket(
        remote_ticket_id=str(row.id),
        number=str(row.id),
        subject=row.subject,
        status=TicketStatus(row.status),
        priority=Priority(row.priority),
        remote_customer_id=row.customer_ref,
        customer_ref=row.customer_ref,
        assignee_remote_id=row.assignee_ref,
        assignee_name=row.assignee_name,
        url=None,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )


def message_from_row(row: LocalMessage, origin_key: str | None = None) -> RemoteMessage:
    return RemoteMessage(
        remote_message_id=str(row.id),
        remote_ticket_id=str(row.ticket_id),
        author_kind=AuthorKind(row.author_kind),
        text=row.text,
        author_name=row.author_name,
        author_remote_id=row.author_ref,
        attachments=attachments_from_json(row.attachments),
        created_at=as_utc(row.created_at),
        origin_key=origin_key,
    )


def article_from_row(row: LocalKbArticle) -> KnowledgeArticle:
    return KnowledgeArticle(
        remote_id=str(row.id), title=row.title, text=row.text, public=row.public
    )


def attachments_to_json(attachments: Sequence[Attachment]) -> list[dict[str, Any]]:
    # `data` is dropped on purpose: the local desk stores no files, only the
    # sender's ref to resolve again.
    return [
        {
            "file_name": attachment.file_name,
            "mime_type": attachment.mime_type,
            "size": attachment.size,
            "kind": attachment.kind,
            "ref": attachment.ref,
            "url": attachment.url,
        }
        for attachment in attachments
    ]


def attachments_from_json(stored: Sequence[dict[str, Any]] | None) -> tuple[Attachment, ...]:
    return tuple(
        Attachment(
            file_name=item["file_name"],
            mime_type=item.get("mime_type"),
            size=item.get("size"),
            kind=item.get("kind") or "document",
            ref=item.get("ref"),
            url=item.get("url"),
        )
        for item in stored or ()
    )
