"""Canned replies and the search behind inline mode (`@bot <query>`).

Canned replies live in the bot's own table, so they work with every
provider. Where the bridge can store knowledge-base articles (the local desk's
`add_article`/`delete_article`; see `ArticleStore`), each canned reply is
also written there: the local desk has no other way to author articles, so
its knowledge base *is* the team's canned replies. Public ones (the default)
are then what customers find with `@bot <query>`; a title starting with `#`
keeps a reply staff-only, like a `#` note in a topic. The article id is kept
on the canned reply, so agents' searches show each text once.

That article is written directly, not through the outbox: the local desk is
the same database and answers at once, and `/canned add` reports the outcome
to the agent who typed it. A failure after the article was written removes it
again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sqlalchemy import and_, case, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from bot.db.models import Agent, CannedReply, Customer, Message, Ticket
from bot.services.errors import UserFacingError
from bot.services.tickets import OPEN_STATUSES, summarize
from bot.services.types import TgUser, TicketSummary
from bridges.base import Capability, HelpdeskBridge, KnowledgeArticle, TicketStatus
from bridges.errors import BridgeError

log = logging.getLogger("deskbridge.knowledge")

TITLE_LIMIT = 128
TEXT_LIMIT = 3500  # leaves room in a 4096-character message for what inline adds
MAX_CANNED = 500  # loaded whole for searching: a team's canned replies are a short list
SEARCH_TIMEOUT_SECONDS = 5.0  # Telegram drops an inline answer that comes too late


@runtime_checkable
class ArticleStore(Protocol):
    """A bridge that can write its knowledge base (today: the local desk)."""

    async def add_article(self, title: str, text: str, public: bool = True
                          ) -> KnowledgeArticle: ...

    async def delete_article(self, remote_id: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Canned:
    canned_id: int
    title: str
    text: str
    public: bool
    remote_article_id: str | None
    use_count: int


InlineItem = TicketSummary | Canned | KnowledgeArticle


@dataclass(frozen=True, slots=True)
class InlinePage:
    items: Sequence[InlineItem]
    next_offset: int | None  # None: this was the last page


def _canned(row: CannedReply) -> Canned:
    return Canned(row.id, row.title, row.text, row.public, row.remote_article_id, row.use_count)


def case_variants(query: str) -> list[str]:
    """Spellings to match a query in: SQLite folds only ASCII case (and so does
    PostgreSQL under the C locale), while people search in Russian too."""
    return list(dict.fromkeys([query, query.casefold(), query.capitalize(), query.upper(),
                               query.title()]))


def article_result_id(article: KnowledgeArticle) -> str:
    """Inline result ids are at most 64 bytes; provider ids may be longer."""
    raw = f"k:{article.remote_id}"
    if len(raw.encode()) <= 64:
        return raw
    return "k#" + hashlib.sha256(article.remote_id.encode()).hexdigest()[:40]


class KnowledgeService:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession],
                 bridge: HelpdeskBridge) -> None:
        self._sm = sessionmaker
        self._bridge = bridge

    @property
    def has_knowledge_base(self) -> bool:
        return Capability.KNOWLEDGE_BASE in self._bridge.capabilities

    def _article_store(self) -> ArticleStore | None:
        bridge = self._bridge
        if self.has_knowledge_base and isinstance(bridge, ArticleStore):
            return bridge
        return None

    # ------------------------------------------------------------ canned replies

    async def add_canned(self, user: TgUser, title: str, text: str, *, public: bool) -> Canned:
        title, text = title.strip(), text.strip()
        if not title or not text:
            raise UserFacingError("canned.usage")
        if len(title) > TITLE_LIMIT or len(text) > TEXT_LIMIT:
            raise UserFacingError("canned.too_long", title=TITLE_LIMIT, text=TEXT_LIMIT)
        store = self._article_store()
        article = None
        if store is not None:
            try:
                article = await store.add_article(title, text, public=public)
            except BridgeError as exc:
                log.warning("writing canned reply %r to the knowledge base failed: %s",
                            title, exc)
                raise UserFacingError("canned.kb_failed") from exc
        try:
            async with self._sm.begin() as session:
                agent_id = await session.scalar(
                    select(Agent.id).where(Agent.tg_user_id == user.tg_user_id))
                row = CannedReply(title=title, text=text, public=public,
                                  remote_article_id=article.remote_id if article else None,
                                  created_by_agent_id=agent_id, use_count=0)
                session.add(row)
                await session.flush()
                return _canned(row)
        except Exception:
            if store is not None and article is not None:
                await store.delete_article(article.remote_id)
            raise

    async def delete_canned(self, canned_id: int) -> Canned | None:
        async with self._sm.begin() as session:
            row = await session.get(CannedReply, canned_id)
            if row is None:
                return None
            found = _canned(row)
            await session.delete(row)
        store = self._article_store()
        if store is not None and found.remote_article_id is not None:
            try:
                await store.delete_article(found.remote_article_id)
            except BridgeError as exc:
                log.warning("canned reply %s is gone, its article %s stays: %s",
                            canned_id, found.remote_article_id, exc)
        return found

    async def list_canned(self) -> list[Canned]:
        async with self._sm() as session:
            rows = await session.scalars(
                select(CannedReply).order_by(CannedReply.use_count.desc(),
                                             func.lower(CannedReply.title), CannedReply.id)
                .limit(MAX_CANNED))
            return [_canned(row) for row in rows]

    async def canned_used(self, canned_id: int) -> None:
        async with self._sm.begin() as session:
            await session.execute(update(CannedReply).where(CannedReply.id == canned_id)
                                  .values(use_count=CannedReply.use_count + 1))

    # ------------------------------------------------------------------ search

    async def search(self, query: str, *, for_agent: bool, offset: int, limit: int
                     ) -> InlinePage:
        """Inline results: for agents tickets, then canned replies, then
        knowledge-base articles; for everyone else public articles only.
        `offset` counts items of that concatenation, so each source is asked
        for at most `offset + limit + 1` items."""
        query = query.strip()
        wanted = offset + limit + 1
        items: list[InlineItem] = []
        if for_agent:
            items += await self._tickets(query, wanted)
            canned = await self._matching_canned(query)
            items += canned
            mirrored = {c.remote_article_id for c in canned if c.remote_article_id}
            mirrored |= await self._mirrored_article_ids()
            items += [a for a in await self._articles(query, for_agent=True, limit=wanted)
                      if a.remote_id not in mirrored]
        else:
            items += await self._articles(query, for_agent=False, limit=wanted)
        page = items[offset: offset + limit]
        more = len(items) > offset + limit
        return InlinePage(page, offset + limit if more else None)

    async def _tickets(self, query: str, limit: int) -> list[TicketSummary]:
        statement = select(Ticket, Customer.full_name).join(
            Customer, Customer.id == Ticket.customer_id)
        number = query.lstrip("#").strip()
        if not query:
            statement = statement.where(Ticket.status.in_(OPEN_STATUSES)).order_by(
                Ticket.updated_at.desc(), Ticket.id.desc())
        else:
            by_number = or_(Ticket.number == number, and_(
                Ticket.number.is_(None), Ticket.id == (int(number) if number.isdigit() else -1)))
            statement = statement.where(or_(by_number, *self._text_matches(query))).order_by(
                case((by_number, 0), else_=1),
                case((Ticket.status == TicketStatus.CLOSED.value, 1), else_=0),
                Ticket.updated_at.desc(), Ticket.id.desc())
        async with self._sm() as session:
            rows = await session.execute(statement.limit(limit))
            return [summarize(ticket, name) for ticket, name in rows]

    @staticmethod
    def _text_matches(query: str) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        for variant in case_variants(query):
            conditions += [
                Ticket.subject.icontains(variant, autoescape=True),
                Customer.full_name.icontains(variant, autoescape=True),
                Customer.username.icontains(variant.lstrip("@"), autoescape=True),
                exists().where(Message.ticket_id == Ticket.id,
                               Message.author_kind.in_(("customer", "agent")),
                               Message.text.icontains(variant, autoescape=True)),
            ]
        return conditions

    async def _matching_canned(self, query: str) -> list[Canned]:
        every = await self.list_canned()
        if not query:
            return every
        folded = query.casefold()
        in_title = [c for c in every if folded in c.title.casefold()]
        in_text = [c for c in every if c not in in_title and folded in c.text.casefold()]
        return in_title + in_text

    async def _mirrored_article_ids(self) -> set[str]:
        async with self._sm() as session:
            rows = await session.scalars(select(CannedReply.remote_article_id).where(
                CannedReply.remote_article_id.is_not(None)))
            return {row for row in rows if row}

    async def _articles(self, query: str, *, for_agent: bool, limit: int
                        ) -> list[KnowledgeArticle]:
        if not self.has_knowledge_base:
            return []
        try:
            found = await asyncio.wait_for(
                self._bridge.search_articles(query, for_agent=for_agent, limit=limit),
                SEARCH_TIMEOUT_SECONDS)
        except (BridgeError, TimeoutError) as exc:
            # An inline answer without articles beats no answer at all.
            log.warning("knowledge-base search failed: %s", exc)
            return []
        # The contract says customers see public articles only; do not rely on it.
        return [a for a in found if for_agent or a.public]
