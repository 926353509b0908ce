"""What each kind of outbox row carries, as typed payloads.

Rows store their payload as JSON; `parse_payload` turns it into the kind's
dataclass, both when a row is written (so a wrong payload fails in the
service that wrote it) and when it is delivered.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any


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
    # Bring the ticket's forum topic in line with the ticket: its name shows
    # the status, it is closed while the ticket is, the card is pinned.
    TOPIC_STATE = "tg.topic_state"
    # An agent edited their reply in the topic: edit the customer's copy of it.
    EDIT_CUSTOMER_COPY = "tg.edit_customer_copy"
    # A delivery became a dead letter: told in the ticket's topic, with Retry / Discard.
    DEAD_LETTER = "tg.dead_letter"

    @property
    def toward_provider(self) -> bool:
        return self.value.startswith("provider.")


@dataclass(frozen=True, slots=True)
class TicketRef:
    """CARD, TOPIC_STATE: show the ticket's current state, whatever changed."""

    ticket_id: int


@dataclass(frozen=True, slots=True)
class MessageRef:
    """MIRROR, CUSTOMER_MESSAGE, POST_MESSAGE, EDIT_MIRROR, EDIT_CUSTOMER_COPY: one
    ticket message."""

    message_id: int
    files_only: bool = False  # the card already carries the text
    parts_done: int = 0  # Telegram messages of this row already sent


@dataclass(frozen=True, slots=True)
class CreateTicket:
    ticket_id: int
    message_id: int


@dataclass(frozen=True, slots=True)
class Notice:
    """AGENT_NOTICE, CUSTOMER_NOTICE: a catalog text about a ticket."""

    ticket_id: int
    key: str
    params: dict[str, Any] = field(default_factory=dict)
    parts_done: int = 0


@dataclass(frozen=True, slots=True)
class ChatNotice:
    """AGENT_CHAT_NOTICE: ready HTML for the agent chat's general topic."""

    html: str


@dataclass(frozen=True, slots=True)
class UpdateTicket:
    ticket_id: int
    status: str | None = None
    priority: str | None = None
    assignee_agent_id: int | None = None
    unassign: bool = False
    actor_agent_id: int | None = None


@dataclass(frozen=True, slots=True)
class Refer:
    ticket_id: int
    target: str
    actor_agent_id: int | None = None


@dataclass(frozen=True, slots=True)
class DeadLetterNotice:
    ticket_id: int
    row_id: int  # the dead row
    what: str  # bot.outbox.dead_letters.WHAT
    why: str  # bot.outbox.dead_letters.why_of


Payload = (DeadLetterNotice | TicketRef | MessageRef | CreateTicket | Notice | ChatNotice
           | UpdateTicket | Refer)

PAYLOADS: dict[Kind, type[Any]] = {
    Kind.CREATE_TICKET: CreateTicket,
    Kind.POST_MESSAGE: MessageRef,
    Kind.UPDATE_TICKET: UpdateTicket,
    Kind.REFER: Refer,
    Kind.MIRROR: MessageRef,
    Kind.CARD: TicketRef,
    Kind.AGENT_NOTICE: Notice,
    Kind.CUSTOMER_MESSAGE: MessageRef,
    Kind.CUSTOMER_NOTICE: Notice,
    Kind.EDIT_MIRROR: MessageRef,
    Kind.AGENT_CHAT_NOTICE: ChatNotice,
    Kind.TOPIC_STATE: TicketRef,
    Kind.EDIT_CUSTOMER_COPY: MessageRef,
    Kind.DEAD_LETTER: DeadLetterNotice,
}


def parse_payload(kind: Kind | str, payload: dict[str, Any]) -> Any:
    """The typed payload of a row; unknown keys are ignored (rows written by
    an older version stay readable), missing required ones raise TypeError."""
    cls = PAYLOADS[Kind(kind)]
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in payload.items() if k in known})
