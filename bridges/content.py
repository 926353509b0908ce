"""Rules about content that every bridge applies the same way."""

from __future__ import annotations

from collections.abc import Sequence

from bridges.base import Attachment, Capabilities, Capability, TicketUpdate
from bridges.errors import Invalid

SUBJECT_LIMIT = 255
NO_SUBJECT = "(no subject)"


def checked_files(text: str, attachments: Sequence[Attachment], *, provider: str,
                  needs_bytes: bool) -> list[Attachment]:
    """The attachments of a message that has something to say; with
    `needs_bytes` (a provider that uploads files) each must carry its bytes."""
    if not text.strip() and not attachments:
        raise Invalid("a message needs text or an attachment", provider=provider)
    if needs_bytes:
        missing = [file.file_name for file in attachments if file.data is None]
        if missing:
            raise Invalid(f"no bytes for {', '.join(missing)}", provider=provider)
    return list(attachments)


def subject_of(subject: str, text: str, limit: int = SUBJECT_LIMIT) -> str:
    """The subject given, else the text's first line, clipped to `limit`."""
    subject = subject.strip() or text.strip().partition("\n")[0].strip() or NO_SUBJECT
    return clip(subject, limit)


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_update(update: TicketUpdate, capabilities: Capabilities, *, provider: str) -> None:
    """An update the provider can apply: never assign and unassign at once,
    and nothing its capabilities lack."""
    if update.unassign and update.assignee is not None:
        raise Invalid("assign and unassign in one update", provider=provider)
    wanted = {
        Capability.ASSIGN: update.assignee is not None or update.unassign,
        Capability.PRIORITY: update.priority is not None,
        Capability.CLOSE_REOPEN: update.status is not None,
    }
    lacking = [capability.value for capability, asked in wanted.items()
               if asked and capability not in capabilities]
    if lacking:
        raise Invalid(f"{provider} cannot change this ({', '.join(lacking)})", provider=provider)
