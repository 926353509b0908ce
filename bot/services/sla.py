"""Service levels: reply deadlines, reminders, and closing silent tickets.

The places that change a ticket (TicketService, SyncService) report plain
facts here — the customer wrote, an agent replied, the status changed — and
these functions turn them into deadlines stored on the ticket
(`reply_due_at`, `autoclose_at`). The card shows them as they are; the
scheduled job (`SlaService.run`, driven by `App.schedule`) compares them with
the clock through an index, so its cost grows with what is due, not with how
many tickets are open.

A reminder goes out once per crossing: `reply_reminded_at` is set in the same
transaction as the reminder's outbox rows (durable across restarts) and
cleared when a new wait begins. With several processes, `FOR UPDATE SKIP
LOCKED` keeps two jobs off the same ticket and the rows' idempotency keys
would refuse a second copy anyway.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Settings
from bot.db.models import Ticket, utcnow
from bot.i18n import gettext
from bot.outbox import (
    Kind,
    OutboxSignal,
    agent_chat_lane,
    agent_lane,
    customer_lane,
    enqueue,
    provider_lane,
    refresh_card,
)
from bot.services import render
from bridges.base import TicketStatus

log = logging.getLogger("deskbridge.sla")

BATCH = 200  # tickets per job run and kind; the rest wait for the next run
SUMMARY_LINES = 30


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    """Thresholds; None turns one off."""

    first_reply: timedelta | None = timedelta(minutes=30)
    next_reply: timedelta | None = timedelta(hours=2)
    autoclose_after: timedelta | None = timedelta(days=7)

    @classmethod
    def from_settings(cls, settings: Settings) -> SlaPolicy:
        def span(value: float, unit: str) -> timedelta | None:
            return timedelta(**{unit: value}) if value > 0 else None

        return cls(first_reply=span(settings.sla_first_reply_minutes, "minutes"),
                   next_reply=span(settings.sla_next_reply_minutes, "minutes"),
                   autoclose_after=span(settings.sla_autoclose_days, "days"))


# -- facts reported by the services (no I/O; they return True when the card changes)


def customer_wrote(ticket: Ticket, policy: SlaPolicy, now: datetime) -> bool:
    """A customer message: a wait for an agent begins, unless one is running
    (the deadline stays with the oldest unanswered message)."""
    changed = False
    if ticket.awaiting_agent_since is None:
        limit = policy.first_reply if ticket.first_reply_at is None else policy.next_reply
        ticket.awaiting_agent_since = now
        ticket.reply_due_at = now + limit if limit is not None else None
        ticket.reply_reminded_at = None
        changed = True
    if ticket.autoclose_at is not None:  # the customer answered: nothing to close
        ticket.autoclose_at = None
        changed = True
    return changed


def agent_replied(ticket: Ticket) -> bool:
    """An agent's reply to the customer ends the wait (notes do not)."""
    if ticket.awaiting_agent_since is None and ticket.reply_due_at is None:
        return False
    ticket.awaiting_agent_since = None
    ticket.reply_due_at = None
    return True


def status_changed(ticket: Ticket, status: TicketStatus, policy: SlaPolicy, now: datetime
                   ) -> None:
    """Waiting for the customer starts the auto-close clock; it also means the
    agents have answered. Closing ends every clock."""
    if status == TicketStatus.WAITING:
        ticket.awaiting_agent_since = None
        ticket.reply_due_at = None
        after = policy.autoclose_after
        ticket.autoclose_at = now + after if after is not None else None
    elif status == TicketStatus.CLOSED:
        ticket.awaiting_agent_since = None
        ticket.reply_due_at = None
        ticket.autoclose_at = None
    else:
        ticket.autoclose_at = None


# -- the scheduled job


@dataclass(slots=True)
class SlaReport:
    reminded: list[int] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)


class SlaService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        signal: OutboxSignal,
        policy: SlaPolicy,
        *,
        agent_chat_id: int,
        forum: bool,
        language: str,
    ) -> None:
        self._sm = sessionmaker
        self._signal = signal
        self.policy = policy
        self._chat_id = agent_chat_id
        self._forum = forum
        self._lang = language

    async def run(self, now: datetime | None = None) -> SlaReport:
        """One pass: remind about overdue replies, close silent tickets.
        `now` lets tests drive the clock."""
        now = now or utcnow()
        report = SlaReport()
        async with self._sm.begin() as session:
            report.reminded = await self._remind(session, now)
        async with self._sm.begin() as session:
            report.closed = await self._autoclose(session, now)
        if report.reminded or report.closed:
            self._signal.notify()
        return report

    async def _remind(self, session: AsyncSession, now: datetime) -> list[int]:
        if self.policy.first_reply is None and self.policy.next_reply is None:
            return []
        due = list(await session.scalars(
            select(Ticket).where(Ticket.status == TicketStatus.OPEN.value,
                                 Ticket.reply_due_at <= now,
                                 Ticket.reply_reminded_at.is_(None))
            .order_by(Ticket.reply_due_at).limit(BATCH)
            .with_for_update(skip_locked=True)))
        summary: list[str] = []
        reminded: list[int] = []
        for ticket in due:
            assert ticket.reply_due_at is not None
            first = ticket.first_reply_at is None
            limit = self.policy.first_reply if first else self.policy.next_reply
            if limit is None:
                continue  # turned off since the deadline was stored
            waited = now - (ticket.awaiting_agent_since or ticket.created_at)
            params = {"waited": render.duration(waited, self._lang),
                      "limit": render.duration(limit, self._lang)}
            enqueue(session, Kind.AGENT_NOTICE, agent_lane(ticket.id),
                    {"ticket_id": ticket.id,
                     "key": "agent.sla_first_overdue" if first else "agent.sla_next_overdue",
                     "params": params},
                    key=f"sla:{ticket.id}:{ticket.reply_due_at.isoformat()}")
            ticket.reply_reminded_at = now
            reminded.append(ticket.id)
            summary.append(self._summary_line(ticket, params["waited"], first))
        if summary:
            head = gettext(self._lang, "agent.sla_summary", count=len(summary))
            more = len(summary) - SUMMARY_LINES
            lines = [head, *summary[:SUMMARY_LINES]]
            if more > 0:
                lines.append(gettext(self._lang, "agent.sla_summary_more", count=more))
            enqueue(session, Kind.AGENT_CHAT_NOTICE, agent_chat_lane(),
                    {"html": "\n".join(lines)[: render.TELEGRAM_TEXT_LIMIT]})
        return reminded

    def _summary_line(self, ticket: Ticket, waited: str, first: bool) -> str:
        label = f"#{render.escape(render.number(ticket))} {render.escape(ticket.subject)}"
        url = render.topic_url(self._chat_id, ticket.tg_topic_id) if self._forum else None
        if url is not None:
            label = f'<a href="{url}">{label}</a>'
        kind = gettext(self._lang, "agent.sla_kind_first" if first else "agent.sla_kind_next")
        return f"• {label} — {waited} ({kind})"

    async def _autoclose(self, session: AsyncSession, now: datetime) -> list[int]:
        after = self.policy.autoclose_after
        if after is None:
            return []
        silent = list(await session.scalars(
            select(Ticket).where(Ticket.status == TicketStatus.WAITING.value,
                                 Ticket.autoclose_at <= now)
            .order_by(Ticket.autoclose_at).limit(BATCH)
            .with_for_update(skip_locked=True)))
        days = f"{after.total_seconds() / 86400:g}"
        for ticket in silent:
            ticket.status = TicketStatus.CLOSED.value
            ticket.closed_at = now
            ticket.updated_at = now
            status_changed(ticket, TicketStatus.CLOSED, self.policy, now)
            enqueue(session, Kind.UPDATE_TICKET, provider_lane(ticket.id),
                    {"ticket_id": ticket.id, "status": TicketStatus.CLOSED.value,
                     "actor_agent_id": None})
            refresh_card(session, ticket.id)
            enqueue(session, Kind.AGENT_NOTICE, agent_lane(ticket.id),
                    {"ticket_id": ticket.id, "key": "agent.sla_autoclosed",
                     "params": {"days": days}},
                    key=f"autoclose:{ticket.id}:{now.isoformat()}")
            # Why, then the usual closing notice with the rating buttons.
            enqueue(session, Kind.CUSTOMER_NOTICE, customer_lane(ticket.customer_id),
                    {"ticket_id": ticket.id, "key": "customer.sla_autoclosed"})
            enqueue(session, Kind.CUSTOMER_NOTICE, customer_lane(ticket.customer_id),
                    {"ticket_id": ticket.id, "key": "customer.status_closed"})
        return [ticket.id for ticket in silent]
