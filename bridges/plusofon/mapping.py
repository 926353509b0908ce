"""Plusofon payloads ⇄ the normalised types of `bridges.base`.

Everything the account writes is the customer speaking; everything else in
a ticket is Plusofon's support answering (providers/plusofon.md: this is a
customer-side API).
"""

from __future__ import annotations

import mimetypes
from datetime import UTC, datetime, timedelta, timezone

from bridges.base import (
    Attachment,
    AuthorKind,
    CustomerIdentity,
    RemoteMessage,
    RemoteTicket,
    TicketStatus,
)
from bridges.plusofon.models import Post, PostAttachment, TicketFull, TicketSummary

# `date` fields are local times without a zone ("2021-09-23 17:44:27").
# Plusofon is a Moscow company; Moscow has kept UTC+3 all year since 2014.
PLUSOFON_TIME = timezone(timedelta(hours=3), "MSK")


def status_of(open_flag: bool) -> TicketStatus:
    # `status` is a boolean: active or not. There is no "waiting" state.
    return TicketStatus.OPEN if open_flag else TicketStatus.CLOSED


def local_time(value: str) -> datetime | None:
    try:
        moment = datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return moment.replace(tzinfo=PLUSOFON_TIME).astimezone(UTC)


def unix_time(seconds: int) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds > 0 else None


def ticket_from_full(
    full: TicketFull, *, customer_ref: str | None, summary: TicketSummary | None = None
) -> RemoteTicket:
    created = local_time(full.date) or (unix_time(summary.creationtime) if summary else None)
    return RemoteTicket(
        remote_ticket_id=full.id,
        number=(summary.displayid if summary and summary.displayid else full.id),
        subject=full.subject or (summary.subject if summary else ""),
        status=status_of(full.status),
        customer_ref=customer_ref,
        created_at=created,
        updated_at=unix_time(summary.lastactivity) if summary else created,
    )


def ticket_from_summary(
    summary: TicketSummary, *, status: TicketStatus, customer_ref: str | None
) -> RemoteTicket:
    return RemoteTicket(
        remote_ticket_id=summary.ticket_id,
        number=summary.displayid or summary.ticket_id,
        subject=summary.subject,
        status=status,
        remote_customer_id=summary.userid or None,
        customer_ref=customer_ref,
        created_at=unix_time(summary.creationtime),
        updated_at=unix_time(summary.lastactivity),
    )


def requester_id(full: TicketFull) -> str | None:
    """The account's author id: whoever wrote the opening post."""
    return full.posts[0].author.id if full.posts else None


def customer_head(customer: CustomerIdentity) -> str:
    """One line naming the Telegram customer: name, @username, Telegram id."""
    parts = [" ".join(customer.full_name.split()) or "?"]
    if customer.username:
        parts.append(f"@{customer.username}")
    parts.append(f"id {customer.customer_ref}")
    return "Telegram: " + ", ".join(parts)


def message_from_post(
    post: Post,
    ticket_id: str,
    *,
    by_customer: bool,
    origin_key: str | None,
    text: str | None = None,
) -> RemoteMessage:
    return RemoteMessage(
        remote_message_id=post.id,
        remote_ticket_id=ticket_id,
        author_kind=AuthorKind.CUSTOMER if by_customer else AuthorKind.AGENT,
        text=post.text if text is None else text,
        author_name=post.author.name or None,
        author_remote_id=post.author.id or None,
        attachments=tuple(attachment_of(item) for item in post.attachments),
        created_at=local_time(post.date),
        origin_key=origin_key,
    )


def attachment_of(item: PostAttachment) -> Attachment:
    name = item.filename or (item.url.rsplit("/", 1)[-1] if item.url else "") or "file"
    mime = item.mimetype or mimetypes.guess_type(name)[0]
    return Attachment(
        file_name=name,
        mime_type=mime,
        size=item.size or None,
        kind="photo" if mime and mime.startswith("image/") else "document",
        ref=item.id or None,
        url=item.url or None,
    )


def files_placeholder(attachments: list[Attachment]) -> str:
    """The text of a message that is only files: `answer` needs a text."""
    return "📎 " + ", ".join(attachment.file_name for attachment in attachments)
