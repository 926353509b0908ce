"""SLA: reply deadlines on the card, one reminder per crossing (durable), a
summary in the general topic, and silent tickets closed. The job is driven
with `now=` instead of waiting."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import App
from bot.db.models import Ticket
from bot.sandbox.telegram_server import FakeTelegramServer
from bot.services.sla import SlaPolicy, SlaService
from bridges.local.models import LocalTicket
from tests.bot.conftest import AGENT_CHAT, ANNA, JANE, eventually, find
from tests.bot.test_agents import card_now
from tests.bot.test_flow import open_ticket


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"sla_first_reply_minutes": 30, "sla_next_reply_minutes": 60,
            "sla_autoclose_days": 3, "telegram_chat_interval": 0.05,
            "telegram_group_per_minute": 1200}


async def ticket_row(app: App) -> Ticket:
    async with app.sessionmaker() as session:
        found = await session.scalar(select(Ticket).order_by(Ticket.id.desc()))
        assert found is not None
        return found


async def test_first_reply_reminder_once_per_crossing(tg: FakeTelegramServer, app: App
                                                      ) -> None:
    topic, card = await open_ticket(tg, JANE, "Server is down")
    job = app.scheduler.get_job("sla")  # the bot is running by now
    assert job is not None and job.trigger.interval == timedelta(seconds=60)
    ticket = await ticket_row(app)
    assert ticket.reply_due_at == ticket.awaiting_agent_since + timedelta(minutes=30)
    assert "Reply due by" in card["text"] and "(within 30 min)" in card["text"]
    assert "Waiting for the first reply" in card["text"]

    # Not yet due: nothing.
    assert (await app.check_sla(now=ticket.created_at + timedelta(minutes=29))).reminded == []
    report = await app.check_sla(now=ticket.created_at + timedelta(minutes=45))
    assert report is not None and report.reminded == [ticket.id]
    reminder = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "No first reply"))
    assert "45 min" in reminder["text"] and "limit 30 min" in reminder["text"]
    summary = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, None), "Overdue replies: 1"))
    assert "#1 Server is down" in summary["text"] and "first reply" in summary["text"]
    assert "https://t.me/c/1000000001/" in (summary["html"] or "")

    # The same crossing never reminds again, not even from a fresh process.
    assert (await app.check_sla(now=ticket.created_at + timedelta(hours=5))).reminded == []
    restarted = SlaService(app.sessionmaker, app.signal, app.sla.policy,
                           agent_chat_id=AGENT_CHAT, forum=True, language="en")
    assert (await restarted.run(now=ticket.created_at + timedelta(hours=6))).reminded == []

    # An answer ends the wait (and the card says when it came).
    tg.user_sends_text(ANNA, AGENT_CHAT, "Looking into it", thread_id=topic)
    await tg.wait_for(lambda s: "First reply:" in card_now(s, card)["text"])
    ticket = await ticket_row(app)
    assert ticket.awaiting_agent_since is None and ticket.reply_due_at is None


async def test_next_reply_reminder_and_autoclose(tg: FakeTelegramServer, app: App) -> None:
    topic, card = await open_ticket(tg, JANE, "Mail is slow")
    tg.user_sends_text(ANNA, AGENT_CHAT, "Which client do you use?", thread_id=topic)
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "Which client"))

    # The desk sets "waiting for the customer": the auto-close clock runs, on the card too.
    async def waiting() -> Ticket | None:
        row = await ticket_row(app)
        return row if row.status == "waiting" and row.autoclose_at else None

    ticket = await eventually(waiting)
    assert ticket.autoclose_at is not None
    await tg.wait_for(lambda s: "Closes by itself" in card_now(s, card)["text"])

    # The customer answers: the clock stops, a wait for the next reply starts.
    tg.user_sends_text(JANE, JANE, "Thunderbird")
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "Thunderbird"))
    ticket = await ticket_row(app)
    assert ticket.status == "open" and ticket.autoclose_at is None
    assert ticket.reply_due_at is not None and ticket.awaiting_agent_since is not None
    assert ticket.reply_due_at - ticket.awaiting_agent_since == timedelta(minutes=60)
    await tg.wait_for(lambda s: "The customer is waiting for a reply" in card_now(s, card)["text"])
    report = await app.check_sla(now=ticket.reply_due_at + timedelta(minutes=5))
    assert report is not None and report.reminded == [ticket.id]
    await tg.wait_for(
        lambda s: find(s.sent_to(AGENT_CHAT, topic), "for a reply (limit 1 h 00 min)"))

    # Answered again, then silence for three days: closed, both sides told.
    tg.user_sends_text(ANNA, AGENT_CHAT, "Please update it", thread_id=topic)
    ticket = await eventually(waiting)
    assert ticket.autoclose_at is not None
    assert (await app.check_sla(now=ticket.autoclose_at - timedelta(minutes=1))).closed == []
    report = await app.check_sla(now=ticket.autoclose_at + timedelta(seconds=1))
    assert report is not None and report.closed == [ticket.id]
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "have not heard from you"))
    stars = await tg.wait_for(lambda s: find(s.sent_to(JANE), "Please rate"))
    assert "c:rate:" in str(stars["reply_markup"])
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "did not answer for 3 days"))
    await tg.wait_for(lambda s: "Status: <b>closed" in (card_now(s, card)["html"] or ""))

    async def desk_closed() -> bool:
        async with app.sessionmaker() as session:
            return await session.scalar(select(LocalTicket.status)) == "closed"

    await eventually(desk_closed)
    assert (await app.check_sla(now=ticket.autoclose_at + timedelta(days=9))).closed == []


async def test_thresholds_can_be_off(tg: FakeTelegramServer, app: App) -> None:
    await open_ticket(tg, JANE, "No deadlines here")
    off = SlaService(app.sessionmaker, app.signal, SlaPolicy(None, None, None),
                     agent_chat_id=AGENT_CHAT, forum=True, language="en")
    policy = SlaPolicy.from_settings(app.settings.model_copy(update={
        "sla_first_reply_minutes": 0, "sla_next_reply_minutes": 0, "sla_autoclose_days": 0}))
    assert policy == SlaPolicy(None, None, None)
    ticket = await ticket_row(app)
    assert ticket.reply_due_at is not None  # stored under the policy of the time...
    # ...but a policy with the reminder off sends none.
    report = await off.run(now=ticket.created_at + timedelta(days=30))
    assert report.reminded == [] and report.closed == []
