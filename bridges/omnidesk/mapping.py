"""Omnidesk payloads ⇄ the normalised types of `bridges.base`.

Ids carry their namespace across the boundary: a case's `case_id` becomes
`remote_ticket_id`, a `message_id` `remote_message_id`, a `user_id`
`remote_customer_id`, a `staff_id` `assignee_remote_id`/`author_remote_id`,
all as strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from html import unescape
from html.parser import HTMLParser

from bridges.base import (
    Attachment,
    AuthorKind,
    CustomerIdentity,
    Department,
    KnowledgeArticle,
    NewTicket,
    Priority,
    RemoteMessage,
    RemoteTicket,
    TicketStatus,
)
from bridges.errors import Invalid
from bridges.omnidesk.client import PROVIDER, UploadFile
from bridges.omnidesk.models import Case, FileInfo, Group, KbArticle, Message

_STATUSES = {status.value: status for status in TicketStatus}
_PRIORITIES = {priority.value: priority for priority in Priority}
_PHOTO_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})
SUBJECT_LIMIT = 255

# -- from Omnidesk ------------------------------------------------------------


def ticket_status(case: Case) -> TicketStatus:
    # A case moved to trash or spam is over for the customer.
    if case.deleted or case.spam:
        return TicketStatus.CLOSED
    return _STATUSES.get(case.status, TicketStatus.OPEN)


def ticket_priority(case: Case) -> Priority:
    return _PRIORITIES.get(case.priority, Priority.NORMAL)


def ticket_from_case(
    case: Case, *, staff_names: Mapping[int, str], customer_ref: str | None
) -> RemoteTicket:
    assignee = case.staff_id or None
    return RemoteTicket(
        remote_ticket_id=str(case.case_id),
        number=case.case_number or str(case.case_id),
        subject=case.subject,
        status=ticket_status(case),
        priority=ticket_priority(case),
        remote_customer_id=str(case.user_id) if case.user_id else None,
        customer_ref=customer_ref,
        assignee_remote_id=str(assignee) if assignee else None,
        assignee_name=staff_names.get(assignee, f"staff {assignee}") if assignee else None,
        created_at=case.created_at,
        updated_at=case.updated_at,
    )


def author_kind(message: Message) -> AuthorKind:
    if message.note:
        return AuthorKind.NOTE
    if message.user_id:
        return AuthorKind.CUSTOMER
    if message.sent_via_rule:
        return AuthorKind.SYSTEM  # an automation rule's answer, sent to the customer
    return AuthorKind.AGENT


def message_from_payload(
    message: Message,
    remote_ticket_id: str,
    *,
    staff_names: Mapping[int, str],
    origin_key: str | None = None,
) -> RemoteMessage:
    kind = author_kind(message)
    staff_id = message.staff_id if kind is not AuthorKind.CUSTOMER else 0
    author_id = message.user_id if kind is AuthorKind.CUSTOMER else staff_id
    return RemoteMessage(
        remote_message_id=str(message.message_id),
        remote_ticket_id=remote_ticket_id,
        author_kind=kind,
        # Either field may be empty; `content_html` wins when both are set.
        text=message.content if message.content.strip() else html_to_text(message.content_html),
        author_name=staff_names.get(staff_id) if staff_id else None,
        author_remote_id=str(author_id) if author_id else None,
        html=message.content_html or None,
        attachments=[attachment_from_file(file) for file in message.attachments],
        created_at=message.created_at,
        origin_key=origin_key,
    )


def attachment_from_file(file: FileInfo) -> Attachment:
    """Files are served at `url`; the bot downloads and re-sends them."""
    mime = (file.mime_type or "").lower()
    kind = "photo" if mime in _PHOTO_TYPES else "video" if mime == "video/mp4" else "document"
    return Attachment(
        file_name=file.file_name or "file",
        mime_type=file.mime_type,
        size=file.file_size,
        kind=kind,
        url=file.url,
    )


def department_from_group(group: Group) -> Department:
    return Department(remote_id=str(group.group_id), title=group.group_title)


def article_from_payload(article: KbArticle) -> KnowledgeArticle:
    return KnowledgeArticle(
        remote_id=str(article.article_id),
        title=localised(article.article_title),
        text=html_to_text(localised(article.article_content)),
        public=article.access_type == "public",
    )


def localised(value: str | dict[str, str]) -> str:
    """Knowledge-base texts are objects keyed by language id when asked for
    every language; the main language comes first."""
    if isinstance(value, str):
        return value
    return next((text for text in value.values() if text), "")


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


class _PlainText(HTMLParser):
    _BREAKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._BREAKS and tag != "br":
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(source: str) -> str:
    """Plain text of a message's HTML (the bot sanitises the HTML itself;
    the text is the fallback and what it compares its own messages by)."""
    if "<" not in source:
        return unescape(source).strip()
    parser = _PlainText()
    parser.feed(source)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip()


# -- to Omnidesk ----------------------------------------------------------------


def customer_fields(customer: CustomerIdentity, channel: str | None) -> dict[str, str]:
    """Who opens the case (providers/omnidesk.md, "Cases"): with a custom
    channel, `user_custom_id` = the Telegram id the bot knows the customer by;
    otherwise `user_telegram_data` (the username, or the phone they shared
    with Telegram's contact button), else their e-mail."""
    fields = {"user_full_name": customer.full_name}
    if channel:
        fields.update(user_custom_id=customer.customer_ref, channel=channel)
    elif customer.username:
        fields["user_telegram_data"] = customer.username.lstrip("@")
    elif customer.phone:
        fields["user_telegram_data"] = telegram_phone(customer.phone)
    elif customer.email:
        fields["user_email"] = customer.email
    else:
        raise Invalid(
            "Omnidesk needs the customer's username, phone or e-mail (no custom channel set)",
            provider=PROVIDER,
        )
    return fields


def telegram_phone(phone: str) -> str:
    # Telegram's shared contacts carry the number without "+" at times.
    digits = "".join(ch for ch in phone if ch.isdigit())
    return f"+{digits}" if digits else phone


def new_case_fields(
    ticket: NewTicket, channel: str | None, content: str
) -> dict[str, str | int]:
    fields: dict[str, str | int] = {
        **customer_fields(ticket.customer, channel),
        "subject": subject_of(ticket.subject, ticket.text),
        "content": content,
        "priority": ticket.priority.value,
    }
    if ticket.department_id:
        fields["group_id"] = numeric_id(ticket.department_id, "department")
    return fields


def subject_of(subject: str, text: str) -> str:
    subject = subject.strip() or text.strip().partition("\n")[0].strip() or "(no subject)"
    return subject if len(subject) <= SUBJECT_LIMIT else subject[: SUBJECT_LIMIT - 1] + "…"


def content_of(text: str, attachments: Sequence[Attachment]) -> str:
    """Omnidesk requires content: a file sent without a caption is named."""
    if text.strip():
        return text
    if attachments:
        return "\n".join(f"📎 {file.file_name}" for file in attachments)
    raise Invalid("a message needs text or an attachment", provider=PROVIDER)


def multipart(
    envelope: str, fields: Mapping[str, str | int], attachments: Sequence[Attachment]
) -> tuple[dict[str, str], list[UploadFile]]:
    """`{"subject": "x"}` → `{"case[subject]": "x"}` and the files as
    `case[attachments][N]` (providers/omnidesk.md, "Basics")."""
    form = {f"{envelope}[{name}]": str(value) for name, value in fields.items()}
    files: list[UploadFile] = []
    for position, file in enumerate(attachments):
        if file.data is None:
            raise Invalid(f"{file.file_name}: no file content to upload", provider=PROVIDER)
        mime = file.mime_type or "application/octet-stream"
        files.append((f"{envelope}[attachments][{position}]", (file.file_name, file.data, mime)))
    return form, files


def numeric_id(value: str, what: str) -> int:
    value = value.strip()
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise Invalid(f"not an Omnidesk {what} id: {value!r}", provider=PROVIDER)
    return int(value)
