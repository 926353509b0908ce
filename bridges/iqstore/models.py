"""iqstore payloads (providers/iqstore.md), in snake_case here and PascalCase
on the wire. A message or related object that cannot be read is logged
with its id and skipped, never the whole page (issue 13)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_pascal

from bridges.parsing import readable


class _Payload(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_pascal, populate_by_name=True, extra="ignore", frozen=True
    )


class ChatMessage(_Payload):
    """A message of a client's chat in a channel."""

    id: int
    chat_id: int | None = None
    local_id: int | None = None  # the sender's own id, echoed back
    event_id: int | None = None
    ticket_message_id: int | None = None
    author: str = ""  # "client", "user" (an agent) or "system"
    client_id: int | None = None
    user_id: int | None = None
    payload: str = "text"  # "text", "file", "notice", ...
    text: str | None = ""
    file_id: str | None = None
    created_at: int = 0  # Unix milliseconds
    my: bool = False


class RelClient(_Payload):
    id: int
    name: str | None = ""


class RelUser(_Payload):
    id: int
    name: str | None = ""
    display_name: str | None = ""


class RelFile(_Payload):
    id: str
    type: str | None = ""
    name: str | None = ""
    size: int | None = None
    content_type: str | None = ""


class RelTicketMessage(_Payload):
    """A ticket message a chat message links to (`TicketMessageId`). The
    seeds do not show it in `Rels`; read when present (README assumption)."""

    id: int
    ticket_id: int


def _readable_list(model: type[_Payload], kind: str) -> Any:
    return BeforeValidator(lambda items: readable(
        model, items if isinstance(items, list) else [], provider="iqstore", kind=kind,
        id_fields=("Id",)))


class Rels(_Payload):
    """The graph of objects a result refers to (`Rels`, or `Graph`)."""

    clients: Annotated[list[RelClient], _readable_list(RelClient, "client")] = Field(
        default_factory=list)
    users: Annotated[list[RelUser], _readable_list(RelUser, "user")] = Field(
        default_factory=list)
    files: Annotated[list[RelFile], _readable_list(RelFile, "file")] = Field(
        default_factory=list)
    ticket_messages: Annotated[list[RelTicketMessage],
                               _readable_list(RelTicketMessage, "ticket message")] = Field(
        default_factory=list)


class ClientInfo(_Payload):
    id: int
    name: str | None = ""


class SessionInfo(_Payload):
    token: str


class ClientAuth(_Payload):
    """The answer of `/clients/signup`, `/clients/auth`, `/clients/integration_auth`."""

    client: ClientInfo
    session: SessionInfo


class UploadedFile(_Payload):
    id: str
    name: str | None = ""
    size: int | None = None
    content_type: str | None = ""


class TicketMessage(_Payload):
    """`Data.Message` of the agent-side `/api/tickets/create_message`."""

    id: int
    ticket_id: int
    local_id: int | None = None
    author: str = ""
    text: str | None = ""
    created_at: int = 0


@dataclass(frozen=True, slots=True)
class ChatPage:
    """Messages (oldest first) with the graph they refer to; `entries` is how
    many the page held, unreadable ones included (a full page: page on)."""

    messages: list[ChatMessage] = field(default_factory=list)
    rels: Rels = field(default_factory=Rels)
    entries: int = 0
