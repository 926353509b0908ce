"""Writing side effects into the outbox.

Every Telegram send and provider call is a row added to the same session, so
it commits or rolls back with the state change that caused it. Lanes keep
order: rows of one lane are delivered one at a time, oldest first; lanes run
independently (one lane per ticket toward the provider, one per ticket toward
the agent chat, one per customer).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import OutboxItem, utcnow


class Kind(enum.StrEnum):
    CREATE_TICKET = "provider.create_ticket"
    POST_MESSAGE = "provider.post_message"
    UPDATE_TICKET = "provider.update_ticket"
    REFER = "provider.refer"
    MIRROR = "tg.mirror"  # a ticket message shown in the agent chat
    CARD = "tg.card"  # create or refresh the ticket card
    AGENT_NOTICE = "tg.agent_notice"
    CUSTOMER_MESSAGE = "tg.customer_message"
    CUSTOMER_NOTICE = "tg.customer_notice"
    # The customer edited a message: edit the bot's copy of it in the agent chat.
    EDIT_MIRROR = "tg.edit_mirror"
    # A message to the agent chat itself (its general topic), about no one ticket.
    AGENT_CHAT_NOTICE = "tg.agent_chat_notice"


def provider_lane(ticket_id: int) -> str:
    return f"p:{ticket_id}"


def agent_lane(ticket_id: int) -> str:
    return f"a:{ticket_id}"


def customer_lane(customer_id: int) -> str:
    return f"c:{customer_id}"


def agent_chat_lane() -> str:
    """The agent chat's general topic; `a:` so a 429 there pauses the whole chat."""
    return "a:chat"


class OutboxSignal:
    """Wakes the dispatcher of this process after a commit that added rows."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()


def enqueue(
    session: AsyncSession,
    kind: Kind,
    lane: str,
    payload: dict[str, Any],
    *,
    key: str | None = None,
    delay: float = 0.0,
) -> OutboxItem:
    """Add a side effect to the session. `key` is the idempotency key: a
    deterministic one (derived from the message it delivers) makes a repeated
    import collide on the unique constraint instead of sending twice."""
    item = OutboxItem(
        idempotency_key=key or f"{kind}:{uuid.uuid4().hex}",
        lane=lane,
        kind=str(kind),
        payload=payload,
        status="pending",
        next_attempt_at=utcnow() + timedelta(seconds=delay),
    )
    session.add(item)
    return item
