"""What a delivered row leaves behind."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiogram.types import Message as TgMessage
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import OutboxItem


@dataclass(slots=True)
class Outcome:
    """Written with the row's `done` status, in one transaction: the
    Telegram messages it produced (for replies and deduplication), state
    changes, and rows it carried along (merged or coalesced)."""

    links: list[tuple[int, int, int | None, int | None]] = field(default_factory=list)
    apply: list[Callable[[AsyncSession], Any]] = field(default_factory=list)
    also_done: list[int] = field(default_factory=list)

    def link(self, sent: TgMessage | Sequence[TgMessage] | None, ticket_id: int | None,
             message_id: int | None) -> None:
        if sent is None:
            return
        for item in sent if isinstance(sent, Sequence) else [sent]:
            self.links.append((item.chat.id, item.message_id, ticket_id, message_id))


# How a kind is delivered: the row, its typed payload → what it left behind.
KindHandler = Callable[[OutboxItem, Any], Awaitable[Outcome]]
