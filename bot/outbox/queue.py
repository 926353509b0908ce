"""Writing side effects into the outbox.

Every Telegram send and provider call is a row added to the same session, so
it commits or rolls back with the state change that caused it. Lanes keep
order: rows of one lane are delivered one at a time, oldest first; lanes run
independently (one lane per ticket toward the provider, one per ticket toward
the agent chat and one for its card, one per customer).
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
from bot.outbox.payloads import Kind, parse_payload
from bot.telegram.pacer import SendPriority


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"  # claimed by a process, under a lease (`next_attempt_at`)
    DONE = "done"
    DEAD = "dead"  # a dead letter: `deskbridge outbox list|replay`


LIVE_STATUSES = (OutboxStatus.PENDING.value, OutboxStatus.IN_FLIGHT.value)

# What the agent group's budget serves first when nothing else is said.
_DEFAULT_PRIORITY = {
    Kind.MIRROR: SendPriority.CUSTOMER,
    Kind.CARD: SendPriority.CARD,
    Kind.AGENT_NOTICE: SendPriority.HELPDESK,
    Kind.EDIT_MIRROR: SendPriority.HELPDESK,
    Kind.AGENT_CHAT_NOTICE: SendPriority.HELPDESK,
    Kind.TOPIC_STATE: SendPriority.CARD,
    Kind.DEAD_LETTER: SendPriority.HELPDESK,
}

AGENT_CHAT_PREFIX = "a:"  # every lane toward the agent chat starts with it
PROVIDER_PREFIX = "p:"


def provider_lane(ticket_id: int) -> str:
    return f"{PROVIDER_PREFIX}{ticket_id}"


def agent_lane(ticket_id: int) -> str:
    return f"a:{ticket_id}"


def card_lane(ticket_id: int) -> str:
    """Card edits have a lane of their own, so that they never hold the
    ticket's messages back (they go last and are coalesced)."""
    return f"a:{ticket_id}:card"


def topic_lane(ticket_id: int) -> str:
    """Topic renames, closing, reopening and the card's pin: last, like card
    edits, and in a lane of their own so they never hold messages back."""
    return f"a:{ticket_id}:topic"


def customer_lane(customer_id: int) -> str:
    return f"c:{customer_id}"


def agent_chat_lane() -> str:
    """The agent chat's general topic."""
    return "a:chat"


def is_agent_chat_lane(lane: str) -> bool:
    return lane.startswith(AGENT_CHAT_PREFIX)


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
    priority: SendPriority | None = None,
) -> OutboxItem:
    """Add a side effect to the session. `key` is the idempotency key: a
    deterministic one (derived from the message it delivers) makes a repeated
    import collide on the unique constraint instead of sending twice."""
    parse_payload(kind, payload)  # a wrong payload fails here, not at delivery
    item = OutboxItem(
        idempotency_key=key or f"{kind}:{uuid.uuid4().hex}",
        lane=lane,
        kind=str(kind),
        payload=payload,
        status=OutboxStatus.PENDING.value,
        priority=int(priority if priority is not None
                     else _DEFAULT_PRIORITY.get(kind, SendPriority.CUSTOMER)),
        next_attempt_at=utcnow() + timedelta(seconds=delay),
    )
    session.add(item)
    return item


def sync_topic(session: AsyncSession, ticket_id: int) -> OutboxItem:
    """Bring the ticket's topic in line with the ticket (queued ones coalesce:
    each compares what the topic shows with what it should)."""
    return enqueue(session, Kind.TOPIC_STATE, topic_lane(ticket_id), {"ticket_id": ticket_id},
                   priority=SendPriority.CARD)


def refresh_card(session: AsyncSession, ticket_id: int, *, delay: float = 0.0) -> OutboxItem:
    """Show the ticket's current state on its card (in the card's own lane,
    after everything else; queued refreshes are coalesced into one edit)."""
    return enqueue(session, Kind.CARD, card_lane(ticket_id), {"ticket_id": ticket_id},
                   delay=delay, priority=SendPriority.CARD)
