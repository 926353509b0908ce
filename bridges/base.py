"""The one provider contract every helpdesk bridge implements.

A bridge translates between deskbridge's normalised types and one helpdesk's
API. It knows nothing of Telegram or aiogram: people are referred to by
opaque strings the bot hands in (`customer_ref`, `agent_ref`) or by the
provider's own ids, and files by an opaque `ref` the bot can resolve again.

Ids carry their namespace: `remote_ticket_id` and `remote_message_id` are the
provider's ids, as strings, whatever their type on the wire.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from bridges.errors import Invalid


class Capability(enum.StrEnum):
    """What a provider can do. The bot hides every button and command whose
    capability the active bridge lacks instead of faking it."""

    CREATE = "create"
    REPLY_AS_AGENT = "reply_as_agent"
    REPLY_AS_CUSTOMER = "reply_as_customer"
    NOTES = "notes"
    ASSIGN = "assign"
    PRIORITY = "priority"
    CLOSE_REOPEN = "close_reopen"
    ATTACHMENTS = "attachments"
    KNOWLEDGE_BASE = "knowledge_base"
    DEPARTMENTS = "departments"
    INCREMENTAL_POLL = "incremental_poll"
    REFER = "refer"  # hand a ticket to another department or person (Zenlix refer_ticket)
    AGENT_ACCOUNTS = "agent_accounts"  # agents can link their own helpdesk account (/link)


Capabilities = frozenset[Capability]


class TicketStatus(enum.StrEnum):
    OPEN = "open"
    WAITING = "waiting"  # waiting for the customer
    CLOSED = "closed"


class Priority(enum.StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"


class AuthorKind(enum.StrEnum):
    CUSTOMER = "customer"
    AGENT = "agent"
    NOTE = "note"  # internal note by an agent, never shown to the customer
    SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file on a message.

    `ref` is an opaque handle chosen by the sender (the bot passes its own file
    handle) and echoed back by providers that store it; `url` is where a
    provider serves the file; `data` carries the bytes when a provider needs
    an upload.
    """

    file_name: str
    mime_type: str | None = None
    size: int | None = None
    kind: str = "document"  # photo | document | voice | video | audio | animation
    ref: str | None = None
    url: str | None = None
    data: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class CustomerIdentity:
    """Who a customer is, as far as the bot knows. `customer_ref` is stable
    (the bot uses the Telegram user id); the rest helps providers that look
    people up by name, username, phone or e-mail."""

    customer_ref: str
    full_name: str
    username: str | None = None
    phone: str | None = None
    email: str | None = None
    language: str | None = None
    remote_customer_id: str | None = None


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """The agent acting. `remote_agent_id` is set when the agent linked a
    provider account (`/link`); otherwise the bridge acts as its service
    account and may prefix the agent's name."""

    agent_ref: str
    full_name: str
    remote_agent_id: str | None = None


@dataclass(frozen=True, slots=True)
class NewTicket:
    customer: CustomerIdentity
    subject: str
    text: str
    attachments: Sequence[Attachment] = ()
    priority: Priority = Priority.NORMAL
    department_id: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class RemoteTicket:
    remote_ticket_id: str
    number: str  # what people see, e.g. "664-245651" or "17"
    subject: str
    status: TicketStatus
    priority: Priority = Priority.NORMAL
    remote_customer_id: str | None = None
    customer_ref: str | None = None
    assignee_remote_id: str | None = None
    assignee_name: str | None = None
    url: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RemoteMessage:
    remote_message_id: str
    remote_ticket_id: str
    author_kind: AuthorKind
    text: str
    author_name: str | None = None
    author_remote_id: str | None = None
    # Helpdesk HTML as the provider sent it; the bot sanitises it before use.
    html: str | None = None
    attachments: Sequence[Attachment] = ()
    created_at: datetime | None = None
    # The idempotency key the bridge's own call carried, when the provider
    # echoes it back; lets the sync recognise its own messages.
    origin_key: str | None = None


@dataclass(frozen=True, slots=True)
class TicketUpdate:
    """A change asked of the helpdesk; `None` fields are left as they are."""

    status: TicketStatus | None = None
    priority: Priority | None = None
    assignee: AgentIdentity | None = None
    unassign: bool = False


@dataclass(frozen=True, slots=True)
class TicketChanged:
    """A ticket's fields as they are now (status, priority, assignee...)."""

    ticket: RemoteTicket
    origin_key: str | None = None


@dataclass(frozen=True, slots=True)
class MessageAdded:
    message: RemoteMessage


ChangeEvent = TicketChanged | MessageAdded


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed since a cursor, oldest first, and the cursor to store
    (in the same transaction as the import) for the next poll."""

    events: Sequence[ChangeEvent]
    cursor: str | None
    # True when the bridge stopped early (page or call budget) and more is
    # waiting: the scheduler polls again soon.
    more: bool = False


@dataclass(frozen=True, slots=True)
class Department:
    remote_id: str
    title: str


@dataclass(frozen=True, slots=True)
class KnowledgeArticle:
    remote_id: str
    title: str
    text: str
    public: bool = True
    url: str | None = None


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What `deskbridge check` prints for the provider."""

    ok: bool
    lines: Sequence[str]


@dataclass(frozen=True, slots=True)
class Erasure:
    """What `erase_customer` erased: `messages` held by the helpdesk itself,
    and whether the helpdesk keeps nothing more of the customer (`complete`;
    otherwise it must be erased there too)."""

    messages: int = 0
    complete: bool = False


@runtime_checkable
class HelpdeskBridge(Protocol):
    """The provider contract. Every method may raise a `bridges.errors.BridgeError`."""

    name: str
    capabilities: Capabilities
    # True when the provider needs the bytes of outgoing files (the bot then
    # downloads them from Telegram first); False when it keeps `Attachment.ref`.
    uploads_files: bool

    async def check(self) -> CheckReport:
        """Verify credentials and reachability; never raises for a bad answer."""

    async def create_ticket(self, ticket: NewTicket) -> RemoteTicket:
        """Open a ticket with its first message. Idempotent per
        `ticket.idempotency_key` where the provider allows it."""

    async def get_ticket(self, remote_ticket_id: str) -> RemoteTicket:
        """Read one ticket as it is now."""

    async def post_customer_message(
        self,
        remote_ticket_id: str,
        customer: CustomerIdentity,
        text: str,
        attachments: Sequence[Attachment] = (),
        idempotency_key: str | None = None,
    ) -> RemoteMessage:
        """Add a message from the customer to a ticket."""

    async def post_agent_reply(
        self,
        remote_ticket_id: str,
        agent: AgentIdentity,
        text: str,
        attachments: Sequence[Attachment] = (),
        idempotency_key: str | None = None,
    ) -> RemoteMessage:
        """Add an agent's reply, visible to the customer."""

    async def post_note(
        self,
        remote_ticket_id: str,
        agent: AgentIdentity,
        text: str,
        idempotency_key: str | None = None,
    ) -> RemoteMessage:
        """Add an internal note, never visible to the customer."""

    async def update_ticket(
        self,
        remote_ticket_id: str,
        update: TicketUpdate,
        actor: AgentIdentity | None = None,
        idempotency_key: str | None = None,
    ) -> RemoteTicket:
        """Change status, priority or assignee; returns the ticket after."""

    async def fetch_changes(self, cursor: str | None) -> Changes:
        """Everything that changed since `cursor` (None: start from now,
        returning no history), oldest first."""

    async def refer(
        self, remote_ticket_id: str, target: str, actor: AgentIdentity | None = None
    ) -> RemoteTicket:
        """Hand the ticket to a department or person named by `target` (a
        department title or id, or a login); raises NotFound for an unknown
        target. Only for bridges with Capability.REFER."""

    async def list_departments(self) -> Sequence[Department]:
        """Departments/subjects/groups a customer may choose from."""

    async def search_articles(
        self, query: str, *, for_agent: bool, limit: int = 20
    ) -> Sequence[KnowledgeArticle]:
        """Knowledge-base search; customers see public, active articles only."""

    async def find_agent(self, login: str, secret: str | None = None) -> AgentIdentity | None:
        """Look a provider account up by login or e-mail (for `/link`).

        `secret` is a password for providers that can only link an account by
        signing in (the bridge keeps what the sign-in returns, e.g. an API
        key, never the password). The returned `remote_agent_id` is stored by
        the bot and handed back in every `AgentIdentity` of that agent."""

    def missing_contact(self, customer: CustomerIdentity) -> bool:
        """True when the provider cannot identify this customer without a
        phone number or e-mail; the bot then asks the customer to share their
        contact (Telegram's contact button) before opening the ticket."""

    def calls_left(self) -> int | None:
        """The provider's remaining API budget where it reports one (Omnidesk's
        `api_calls_left`), for the metrics; None where there is none."""

    def own_file(self, attachment: Attachment) -> str | None:
        """The bot's own file handle behind an attachment the bridge read
        back (a desk that keeps `Attachment.ref` as the bot gave it), so the
        bot can send the file again without downloading it; else None."""

    async def erase_customer(self, customer_ref: str,
                             remote_ticket_ids: Sequence[str]) -> Erasure:
        """Erase what the helpdesk (where the bridge can) and the bridge
        itself keep of a customer's words and identity; tickets stay, for
        statistics. Safe to call again."""

    async def aclose(self) -> None:
        """Release connections."""


# Methods a bridge must write itself when it declares the capability; without
# it, `BridgeBase` answers for them.
GATED_METHODS: dict[Capability, tuple[str, ...]] = {
    Capability.REPLY_AS_AGENT: ("post_agent_reply",),
    Capability.NOTES: ("post_note",),
    Capability.ASSIGN: ("update_ticket",),
    Capability.PRIORITY: ("update_ticket",),
    Capability.CLOSE_REOPEN: ("update_ticket",),
    Capability.REFER: ("refer",),
    Capability.DEPARTMENTS: ("list_departments",),
    Capability.KNOWLEDGE_BASE: ("search_articles",),
    Capability.AGENT_ACCOUNTS: ("find_agent",),
}


class BridgeBase(ABC):
    """What every bridge shares. A bridge writes the methods every provider
    has (checking, creating, reading, the customer's messages, the change
    feed) and those of the capabilities it declares; the rest answer here as
    a provider without the capability must: a refusal (`Invalid`) for an
    action, nothing for a lookup. Declaring a capability without writing its
    method is an error when the class is defined."""

    name: str
    capabilities: Capabilities = frozenset()
    uploads_files: bool = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        missing = sorted({method for capability in cls.capabilities
                          for method in GATED_METHODS.get(capability, ())
                          if getattr(cls, method) is getattr(BridgeBase, method)})
        if missing:
            raise TypeError(f"{cls.__name__} declares capabilities it does not implement: "
                            f"{', '.join(missing)}")

    # -- every bridge -------------------------------------------------------------

    @abstractmethod
    async def check(self) -> CheckReport: ...

    @abstractmethod
    async def create_ticket(self, ticket: NewTicket) -> RemoteTicket: ...

    @abstractmethod
    async def get_ticket(self, remote_ticket_id: str) -> RemoteTicket: ...

    @abstractmethod
    async def post_customer_message(
        self,
        remote_ticket_id: str,
        customer: CustomerIdentity,
        text: str,
        attachments: Sequence[Attachment] = (),
        idempotency_key: str | None = None,
    ) -> RemoteMessage: ...

    @abstractmethod
    async def fetch_changes(self, cursor: str | None) -> Changes: ...

    # -- capabilities: a refusal or nothing unless declared ------------------------

    async def post_agent_reply(
        self,
        remote_ticket_id: str,
        agent: AgentIdentity,
        text: str,
        attachments: Sequence[Attachment] = (),
        idempotency_key: str | None = None,
    ) -> RemoteMessage:
        raise self._lacks(Capability.REPLY_AS_AGENT, "agent replies")

    async def post_note(
        self,
        remote_ticket_id: str,
        agent: AgentIdentity,
        text: str,
        idempotency_key: str | None = None,
    ) -> RemoteMessage:
        raise self._lacks(Capability.NOTES, "internal notes")

    async def update_ticket(
        self,
        remote_ticket_id: str,
        update: TicketUpdate,
        actor: AgentIdentity | None = None,
        idempotency_key: str | None = None,
    ) -> RemoteTicket:
        raise self._lacks(Capability.CLOSE_REOPEN, "changes of status, priority or assignee")

    async def refer(
        self, remote_ticket_id: str, target: str, actor: AgentIdentity | None = None
    ) -> RemoteTicket:
        raise self._lacks(Capability.REFER, "departments to refer to")

    async def list_departments(self) -> Sequence[Department]:
        return []

    async def search_articles(
        self, query: str, *, for_agent: bool, limit: int = 20
    ) -> Sequence[KnowledgeArticle]:
        return []

    async def find_agent(self, login: str, secret: str | None = None) -> AgentIdentity | None:
        return None

    # -- defaults every bridge may refine ------------------------------------------

    def missing_contact(self, customer: CustomerIdentity) -> bool:
        return False

    def calls_left(self) -> int | None:
        return None

    def own_file(self, attachment: Attachment) -> str | None:
        return None

    async def erase_customer(self, customer_ref: str,
                             remote_ticket_ids: Sequence[str]) -> Erasure:
        return Erasure()

    async def aclose(self) -> None:  # noqa: B027 - a default, not an abstract method
        """Nothing to release unless the bridge holds connections."""

    def _lacks(self, capability: Capability, what: str) -> Invalid:
        return Invalid(f"{self.name} has no {what} (capability {capability.value})",
                       provider=self.name)
