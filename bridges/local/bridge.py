"""The built-in local desk: the database is the helpdesk.

Every write happens in one transaction together with the `local_events`
rows it causes, and those rows are the change feed the scheduler polls, so
the bot treats the local desk exactly like a remote provider.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from sqlalchemy import CursorResult, case, delete, func, or_, select, update
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bridges.base import (
    AgentIdentity,
    Attachment,
    AuthorKind,
    BridgeBase,
    Capabilities,
    Capability,
    Changes,
    CheckReport,
    CustomerIdentity,
    Erasure,
    KnowledgeArticle,
    NewTicket,
    RemoteMessage,
    RemoteTicket,
    TicketStatus,
    TicketUpdate,
)
from bridges.content import check_update, checked_files, clip, subject_of
from bridges.errors import BridgeError, Invalid, NotFound, Unavailable
from bridges.local.mapping import (
    article_from_row,
    attachments_to_json,
    message_from_row,
    parse_row_id,
    ticket_from_row,
)
from bridges.local.models import (
    KEY_LENGTH,
    NAME_LENGTH,
    REF_LENGTH,
    LocalAgent,
    LocalEvent,
    LocalEventKind,
    LocalKbArticle,
    LocalMessage,
    LocalTicket,
)
from bridges.local.poll import read_changes
from bridges.registry import BridgeDeps, register

PROVIDER = "local"
ERASED = "(erased)"
DEFAULT_PAGE_SIZE = 500

# PostgreSQL advisory lock held from the allocation of event ids to commit
# (see `_record_events`); the value only has to be unique within the database.
_EVENT_ORDER_LOCK = 0x6C6F63616C  # "local"


class LocalDeskBridge(BridgeBase):
    name = PROVIDER
    # The local desk has no departments: `list_departments` returns none.
    capabilities: Capabilities = frozenset(Capability) - {Capability.DEPARTMENTS,
                                                           Capability.REFER}
    # The desk keeps the sender's file handle (`Attachment.ref`), not the bytes.
    uploads_files: bool = False

    def __init__(self, engine: AsyncEngine, *, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.page_size = page_size
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        # SQLite serialises writers already; PostgreSQL allocates sequence
        # values outside commit order and needs the lock.
        self._orders_event_ids = engine.dialect.name == "postgresql"

    # -- contract ---------------------------------------------------------

    async def check(self) -> CheckReport:
        try:
            async with self._transaction() as session:
                tickets = await session.scalar(select(func.count()).select_from(LocalTicket))
                open_tickets = await session.scalar(
                    select(func.count())
                    .select_from(LocalTicket)
                    .where(LocalTicket.status != TicketStatus.CLOSED.value)
                )
                articles = await session.scalar(
                    select(func.count())
                    .select_from(LocalKbArticle)
                    .where(LocalKbArticle.active.is_(True))
                )
        except (BridgeError, SQLAlchemyError, OSError) as exc:
            return CheckReport(ok=False, lines=[f"local desk: {_error_text(exc)}"])
        return CheckReport(
            ok=True,
            lines=[
                f"local desk: {tickets} tickets ({open_tickets} open), "
                f"{articles} knowledge-base articles"
            ],
        )

    async def create_ticket(self, ticket: NewTicket) -> RemoteTicket:
        checked_files(ticket.text, ticket.attachments, provider=PROVIDER, needs_bytes=False)
        key = _checked_key(ticket.idempotency_key)
        customer_ref = _checked_ref(ticket.customer.customer_ref)
        try:
            async with self._transaction() as session:
                if key is not None and (existing := await _ticket_by_key(session, key)):
                    return ticket_from_row(existing)
                now = _utc_now()
                row = LocalTicket(
                    subject=subject_of(ticket.subject, ticket.text, NAME_LENGTH),
                    customer_ref=customer_ref,
                    customer_name=clip(ticket.customer.full_name, NAME_LENGTH),
                    status=TicketStatus.OPEN.value,
                    priority=ticket.priority.value,
                    department_id=ticket.department_id,
                    idempotency_key=key,
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
                await session.flush()
                first_message = LocalMessage(
                    ticket_id=row.id,
                    author_kind=AuthorKind.CUSTOMER.value,
                    author_ref=customer_ref,
                    author_name=clip(ticket.customer.full_name, NAME_LENGTH),
                    text=ticket.text,
                    attachments=attachments_to_json(ticket.attachments),
                    created_at=now,
                )
                session.add(first_message)
                await session.flush()
                await self._record_events(
                    session,
                    row.id,
                    [
                        (LocalEventKind.TICKET_CHANGED, None),
                        (LocalEventKind.MESSAGE_ADDED, first_message.id),
                    ],
                    origin_key=key,
                    now=now,
                )
                return ticket_from_row(row)
        except IntegrityError:
            # A concurrent call with the same key won the unique constraint.
            if key is None:
                raise
            async with self._transaction() as session:
                existing = await _ticket_by_key(session, key)
            if existing is None:
                raise
            return ticket_from_row(existing)

    async def get_ticket(self, remote_ticket_id: str) -> RemoteTicket:
        async with self._transaction() as session:
            return ticket_from_row(await _ticket(session, remote_ticket_id))

    async def post_customer_message(
        self,
        remote_ticket_id: str,
        customer: CustomerIdentity,
        text: str,
        attachments: Sequence[Attachment] = (),
        idempotency_key: str | None = None,
    ) -> RemoteMessage:
        return await self._post_message(
            remote_ticket_id,
            AuthorKind.CUSTOMER,
            customer,
            text=text,
            attachments=attachments,
            idempotency_key=idempotency_key,
        )

    async def post_agent_reply(
        self,
        remote_ticket_id: str,
        agent: AgentIdentity,
        text: str,
        attachments: Sequence[Attachment] = (),
        idempotency_key: str | None = None,
    ) -> RemoteMessage:
        return await self._post_message(
            remote_ticket_id,
            AuthorKind.AGENT,
            agent,
            text=text,
            attachments=attachments,
            idempotency_key=idempotency_key,
        )

    async def post_note(
        self,
        remote_ticket_id: str,
        agent: AgentIdentity,
        text: str,
        idempotency_key: str | None = None,
    ) -> RemoteMessage:
        return await self._post_message(
            remote_ticket_id,
            AuthorKind.NOTE,
            agent,
            text=text,
            attachments=(),
            idempotency_key=idempotency_key,
        )

    async def update_ticket(
        self,
        remote_ticket_id: str,
        update: TicketUpdate,
        actor: AgentIdentity | None = None,
        idempotency_key: str | None = None,
    ) -> RemoteTicket:
        # `actor` is not recorded: the local desk keeps no audit trail beyond
        # the event feed, and the bot logs who acted on its side.
        check_update(update, self.capabilities, provider=self.name)
        key = _checked_key(idempotency_key)
        assignee_ref = _checked_ref(update.assignee.agent_ref) if update.assignee else None
        async with self._transaction() as session:
            # The row lock makes the "already applied?" check below race-safe.
            ticket = await _ticket(session, remote_ticket_id, for_update=True)
            if key is not None and await _event_seen(session, ticket.id, key):
                return ticket_from_row(ticket)
            changed = False
            if update.status is not None and ticket.status != update.status.value:
                ticket.status = update.status.value
                changed = True
            if update.priority is not None and ticket.priority != update.priority.value:
                ticket.priority = update.priority.value
                changed = True
            if update.assignee is not None:
                assignee_name = await _agent_name(session, update.assignee)
                if (ticket.assignee_ref, ticket.assignee_name) != (assignee_ref, assignee_name):
                    ticket.assignee_ref, ticket.assignee_name = assignee_ref, assignee_name
                    changed = True
            if update.unassign and (ticket.assignee_ref, ticket.assignee_name) != (None, None):
                ticket.assignee_ref, ticket.assignee_name = None, None
                changed = True
            if changed:
                now = _utc_now()
                ticket.updated_at = now
                await self._record_events(
                    session,
                    ticket.id,
                    [(LocalEventKind.TICKET_CHANGED, None)],
                    origin_key=key,
                    now=now,
                )
            return ticket_from_row(ticket)

    async def fetch_changes(self, cursor: str | None) -> Changes:
        async with self._transaction() as session:
            return await read_changes(session, cursor, self.page_size)

    async def search_articles(
        self, query: str, *, for_agent: bool, limit: int = 20
    ) -> Sequence[KnowledgeArticle]:
        if limit < 1:
            return []
        statement = select(LocalKbArticle).where(LocalKbArticle.active.is_(True))
        if not for_agent:
            statement = statement.where(LocalKbArticle.public.is_(True))
        folded_query = query.strip().casefold()
        if folded_query:
            title_hit = LocalKbArticle.title_folded.contains(folded_query, autoescape=True)
            text_hit = LocalKbArticle.text_folded.contains(folded_query, autoescape=True)
            statement = statement.where(or_(title_hit, text_hit)).order_by(
                case((title_hit, 0), else_=1), LocalKbArticle.id
            )
        else:
            statement = statement.order_by(LocalKbArticle.id)
        async with self._transaction() as session:
            rows = (await session.scalars(statement.limit(limit))).all()
            return [article_from_row(row) for row in rows]

    async def find_agent(self, login: str, secret: str | None = None) -> AgentIdentity | None:
        """Gets or creates the local desk account for `login`: in the local
        desk, linking means choosing the name one's replies carry."""
        login = login.strip()
        if not login or len(login) > NAME_LENGTH:
            return None
        try:
            async with self._transaction() as session:
                account = await _agent_by_login(session, login)
                if account is None:
                    account = LocalAgent(login=login, full_name=login)
                    session.add(account)
                    await session.flush()
                return _agent_identity(account)
        except IntegrityError:
            # Someone linked the same login at the same moment.
            async with self._transaction() as session:
                account = await _agent_by_login(session, login)
            if account is None:
                raise
            return _agent_identity(account)

    def own_file(self, attachment: Attachment) -> str | None:
        # The desk keeps the bot's own file handle (Telegram's file id).
        return attachment.ref

    async def erase_customer(self, customer_ref: str,
                             remote_ticket_ids: Sequence[str]) -> Erasure:
        """The desk's copy goes: the messages of the customer's tickets and
        the events pointing at them; the tickets stay, anonymised."""
        ids = [ticket_id for remote in remote_ticket_ids
               if (ticket_id := parse_row_id(remote)) is not None]
        async with self._transaction() as session:
            ids += list(await session.scalars(select(LocalTicket.id).where(
                LocalTicket.customer_ref == customer_ref)))
            erased = select(LocalMessage.id).where(LocalMessage.ticket_id.in_(ids))
            await session.execute(delete(LocalEvent).where(LocalEvent.message_id.in_(erased)))
            result = await session.execute(delete(LocalMessage).where(
                LocalMessage.ticket_id.in_(ids)))
            await session.execute(update(LocalTicket).where(LocalTicket.id.in_(ids)).values(
                subject=ERASED, customer_ref=ERASED, customer_name=ERASED))
        count = result.rowcount if isinstance(result, CursorResult) else 0
        return Erasure(messages=int(count or 0), complete=True)

    # -- knowledge base (canned replies build on these) -------------------

    async def add_article(self, title: str, text: str, public: bool = True) -> KnowledgeArticle:
        title = title.strip()
        if not title or not text.strip():
            raise Invalid("an article needs a title and a text", provider=self.name)
        title = clip(title, NAME_LENGTH)
        now = _utc_now()
        row = LocalKbArticle(
            title=title,
            text=text,
            title_folded=title.casefold(),
            text_folded=text.casefold(),
            public=public,
            active=True,
            created_at=now,
            updated_at=now,
        )
        async with self._transaction() as session:
            session.add(row)
            await session.flush()
            return article_from_row(row)

    async def delete_article(self, remote_id: str) -> bool:
        """True when the article existed and is gone."""
        article_id = parse_row_id(remote_id)
        if article_id is None:
            return False
        async with self._transaction() as session:
            result = await session.execute(
                delete(LocalKbArticle).where(LocalKbArticle.id == article_id)
            )
            return isinstance(result, CursorResult) and result.rowcount > 0

    async def list_articles(self) -> list[KnowledgeArticle]:
        """Every active article, public or staff-only, by title."""
        async with self._transaction() as session:
            rows = (
                await session.scalars(
                    select(LocalKbArticle)
                    .where(LocalKbArticle.active.is_(True))
                    .order_by(LocalKbArticle.title_folded, LocalKbArticle.id)
                )
            ).all()
            return [article_from_row(row) for row in rows]

    # -- internals ---------------------------------------------------------

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        """One session in one transaction; database failures become bridge
        errors here, except IntegrityError, which callers turn into
        idempotent replays."""
        try:
            async with self._sessions.begin() as session:
                yield session
        except (OperationalError, InterfaceError, OSError) as exc:
            raise Unavailable(_error_text(exc), provider=self.name) from exc
        except DataError as exc:
            raise Invalid(_error_text(exc), provider=self.name) from exc

    async def _post_message(
        self,
        remote_ticket_id: str,
        author_kind: AuthorKind,
        author: CustomerIdentity | AgentIdentity,
        *,
        text: str,
        attachments: Sequence[Attachment],
        idempotency_key: str | None,
    ) -> RemoteMessage:
        checked_files(text, attachments, provider=PROVIDER, needs_bytes=False)
        key = _checked_key(idempotency_key)
        author_ref = _checked_ref(
            author.agent_ref if isinstance(author, AgentIdentity) else author.customer_ref
        )
        try:
            async with self._transaction() as session:
                if key is not None and (existing := await _message_by_key(session, key)):
                    return self._replayed(existing, remote_ticket_id, key)
                ticket = await _ticket(session, remote_ticket_id, for_update=True)
                author_name = (
                    await _agent_name(session, author)
                    if isinstance(author, AgentIdentity)
                    else clip(author.full_name, NAME_LENGTH)
                )
                now = _utc_now()
                message = LocalMessage(
                    ticket_id=ticket.id,
                    author_kind=author_kind.value,
                    author_ref=author_ref,
                    author_name=author_name,
                    text=text,
                    attachments=attachments_to_json(attachments),
                    idempotency_key=key,
                    created_at=now,
                )
                session.add(message)
                await session.flush()
                events: list[tuple[LocalEventKind, int | None]] = [
                    (LocalEventKind.MESSAGE_ADDED, message.id)
                ]
                status_after = _status_after_message(author_kind, TicketStatus(ticket.status))
                if status_after is not None:
                    ticket.status = status_after.value
                    events.append((LocalEventKind.TICKET_CHANGED, None))
                ticket.updated_at = now
                await self._record_events(session, ticket.id, events, origin_key=key, now=now)
                return message_from_row(message, origin_key=key)
        except IntegrityError:
            if key is None:
                raise
            async with self._transaction() as session:
                existing = await _message_by_key(session, key)
            if existing is None:
                raise
            return self._replayed(existing, remote_ticket_id, key)

    def _replayed(self, existing: LocalMessage, remote_ticket_id: str, key: str) -> RemoteMessage:
        if existing.ticket_id != parse_row_id(remote_ticket_id):
            raise Invalid(
                f"idempotency key {key!r} was used on ticket {existing.ticket_id}",
                provider=self.name,
            )
        return message_from_row(existing, origin_key=key)

    async def _record_events(
        self,
        session: AsyncSession,
        ticket_id: int,
        events: Sequence[tuple[LocalEventKind, int | None]],
        *,
        origin_key: str | None,
        now: datetime,
    ) -> None:
        """Append to the change feed; call last in a transaction.

        The event id is the poll cursor, so ids must become visible in id
        order: a PostgreSQL sequence hands out ids before commit, and a
        poller that saw id 11 committed before id 10 would skip 10 forever.
        The transaction-scoped lock serialises allocation-to-commit (only the
        event inserts and the commit run under it)."""
        if self._orders_event_ids:
            await session.execute(select(func.pg_advisory_xact_lock(_EVENT_ORDER_LOCK)))
        session.add_all(
            LocalEvent(
                ticket_id=ticket_id,
                kind=kind.value,
                message_id=message_id,
                origin_key=origin_key,
                created_at=now,
            )
            for kind, message_id in events
        )
        await session.flush()


@register(PROVIDER)
async def create_local_bridge(deps: BridgeDeps) -> LocalDeskBridge:
    return LocalDeskBridge(deps.engine)


# -- rules -----------------------------------------------------------------


def _status_after_message(author_kind: AuthorKind, status: TicketStatus) -> TicketStatus | None:
    """What a message does to the ticket's status, None for nothing: the
    customer writing (re)opens the ticket; an agent's answer leaves it waiting
    for the customer; notes change nothing."""
    if author_kind is AuthorKind.CUSTOMER and status is not TicketStatus.OPEN:
        return TicketStatus.OPEN
    if author_kind is AuthorKind.AGENT and status is TicketStatus.OPEN:
        return TicketStatus.WAITING
    return None


def _checked_key(key: str | None) -> str | None:
    if key is not None and not 0 < len(key) <= KEY_LENGTH:
        raise Invalid(f"idempotency key must be 1..{KEY_LENGTH} characters", provider=PROVIDER)
    return key


def _checked_ref(ref: str) -> str:
    # Refs are identities: clipping one would merge two people.
    if not 0 < len(ref) <= REF_LENGTH:
        raise Invalid(f"ref must be 1..{REF_LENGTH} characters", provider=PROVIDER)
    return ref


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return str(exc.orig).strip() or type(exc.orig).__name__
    return str(exc) or type(exc).__name__


def _agent_identity(account: LocalAgent) -> AgentIdentity:
    return AgentIdentity(
        agent_ref=account.login, full_name=account.full_name, remote_agent_id=str(account.id)
    )


# -- queries -----------------------------------------------------------------


async def _ticket(
    session: AsyncSession, remote_ticket_id: str, *, for_update: bool = False
) -> LocalTicket:
    ticket_id = parse_row_id(remote_ticket_id)
    ticket = None
    if ticket_id is not None:
        statement = select(LocalTicket).where(LocalTicket.id == ticket_id)
        if for_update:
            statement = statement.with_for_update()  # ignored by SQLite, which locks the file
        ticket = await session.scalar(statement)
    if ticket is None:
        raise NotFound(f"no ticket {remote_ticket_id!r}", provider=PROVIDER)
    return ticket


async def _ticket_by_key(session: AsyncSession, key: str) -> LocalTicket | None:
    return await session.scalar(select(LocalTicket).where(LocalTicket.idempotency_key == key))


async def _message_by_key(session: AsyncSession, key: str) -> LocalMessage | None:
    return await session.scalar(select(LocalMessage).where(LocalMessage.idempotency_key == key))


async def _event_seen(session: AsyncSession, ticket_id: int, origin_key: str) -> bool:
    found = await session.scalar(
        select(LocalEvent.id)
        .where(LocalEvent.ticket_id == ticket_id, LocalEvent.origin_key == origin_key)
        .limit(1)
    )
    return found is not None


async def _agent_by_login(session: AsyncSession, login: str) -> LocalAgent | None:
    return await session.scalar(select(LocalAgent).where(LocalAgent.login == login))


async def _agent_name(session: AsyncSession, agent: AgentIdentity) -> str:
    """The name of the linked local account, else the agent's own name."""
    agent_id = parse_row_id(agent.remote_agent_id) if agent.remote_agent_id else None
    if agent_id is not None:
        linked_name = await session.scalar(
            select(LocalAgent.full_name).where(LocalAgent.id == agent_id)
        )
        if linked_name is not None:
            return linked_name
    # A stale link must not dead-letter a reply: fall back to the agent's name.
    return clip(agent.full_name, NAME_LENGTH)
