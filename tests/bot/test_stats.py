"""/stats: figures as text for agents, and as a chart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import App
from bot.db.models import Customer, Message, Ticket
from bot.db.session import create_engine, create_sessionmaker
from bot.sandbox.telegram_server import FakeTelegramServer
from bot.services.stats import StatsService, as_text, chart_png
from tests.bot.conftest import AGENT_CHAT, ANNA, BORIS, JANE, OUTSIDER, callback_data_of, find
from tests.bot.test_flow import open_ticket

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"telegram_chat_interval": 0.05, "telegram_group_per_minute": 1200}


async def test_stats_text_and_chart(tg: FakeTelegramServer, app: App) -> None:
    topic, _ = await open_ticket(tg, JANE, "Printer jam")
    await open_ticket(tg, OUTSIDER, "Still waiting")
    tg.user_sends_text(ANNA, AGENT_CHAT, "/take", thread_id=topic)
    tg.user_sends_text(ANNA, AGENT_CHAT, "Fixed remotely", thread_id=topic)
    tg.user_sends_text(ANNA, AGENT_CHAT, "/close", thread_id=topic)
    closed = await tg.wait_for(lambda s: find(s.sent_to(JANE), "Please rate"))
    tg.user_presses(JANE, (JANE, closed["message_id"]), callback_data_of(closed, "4"))
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "tell us more"))
    tg.user_sends_text(JANE, JANE, "Fast and friendly")
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "passed your comment"))

    tg.user_sends_text(BORIS, AGENT_CHAT, "/stats")
    text = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, None), "Support statistics"))
    body = text["text"]
    assert "Open: 1 · waiting for customers: 0 · closed today: 1 · all time: 2" in body
    assert "First reply: " in body and "Resolution: " in body and "(1 closed)" in body
    assert "Rating: 4.0 of 5 (1 rating: 5⭐0 4⭐1 3⭐0 2⭐0 1⭐0)" in body
    assert "#1 ⭐⭐⭐⭐: Fast and friendly" in body
    assert "• Anna: 0 · 1 · 1 · ⭐ 4.0 (1)" in body

    tg.user_presses(BORIS, (AGENT_CHAT, text["message_id"]), callback_data_of(text, "Chart"))
    photo = await tg.wait_for(lambda s: next(
        (r for r in s.sent_to(AGENT_CHAT) if r["media_type"] == "photo"), None))
    assert "last 30 days" in photo["text"]
    assert tg.files[photo["file_id"]].data.startswith(PNG)

    # In a private chat, in the agent's own language; `/stats chart` sends the picture.
    tg.user_sends_text(ANNA, ANNA, "/stats chart")
    mine = await tg.wait_for(lambda s: next(
        (r for r in s.sent_to(ANNA) if r["media_type"] == "photo"), None))
    assert "Поддержка" in mine["text"]

    # The button is for agents only, however it is pressed.
    query = tg.user_sends_forged_callback(OUTSIDER, OUTSIDER, 1, "s:chart")
    await tg.wait_for(lambda s: query in s.callback_answers)
    assert "agents only" in tg.callback_answers[query]["text"]


async def test_report_figures(migrated_url: str) -> None:
    # The figures need only the database: no bot runs here (the chart is drawn
    # in this thread and would stall a running bot's event loop).
    engine = create_engine(migrated_url)
    try:
        await _check_report_figures(create_sessionmaker(engine))
    finally:
        await engine.dispose()


async def _check_report_figures(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    now = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)

    def ago(**kwargs: float) -> datetime:
        return now - timedelta(**kwargs)

    async with sessionmaker.begin() as session:
        customer = Customer(tg_user_id=77, full_name="Carl", language="en")
        session.add(customer)
        await session.flush()
        add = _adder(session, customer.id)
        # First replies after 10 and 30 min; resolutions after 2 h and 1 day.
        await add(created=ago(hours=3), first_reply=ago(hours=3, minutes=-10),
                  closed=ago(hours=1), assignee="Anna", rating=5, rated=ago(hours=1))
        await add(created=ago(days=2), first_reply=ago(days=2, minutes=-30),
                  closed=ago(days=1), assignee="Boris", rating=2, rated=ago(days=1),
                  comment="Too slow")
        await add(created=ago(minutes=50), status="open", due=ago(minutes=20))
        await add(created=ago(days=40), closed=ago(days=39))  # outside the window
        session.add(Message(ticket_id=None, author_kind="agent", author_name="Anna",
                            text="hi", created_at=ago(hours=2)))

    report = await StatsService(sessionmaker).report(now=now)
    assert (report.open, report.waiting, report.closed_today, report.total) == (1, 0, 1, 4)
    assert report.overdue == 1
    assert report.first_reply_avg == 20 * 60 and report.first_reply_median == 20 * 60
    assert report.resolution_avg == (2 * 3600 + 86400) / 2 and report.resolved == 2
    assert report.avg_rating == 3.5 and report.rating_counts == {5: 1, 2: 1}
    assert [(a.name, a.closed, a.replies, a.avg_rating) for a in report.per_agent] == [
        ("Anna", 1, 1, 5.0), ("Boris", 1, 0, 2.0)]
    assert report.daily[-1][1:] == (2, 1)  # today: two opened, one closed
    assert report.comments[0].text == "Too slow"
    text = as_text(report, "ru")
    assert "Первый ответ: в среднем 20 мин" in text and "Просрочено ответов сейчас: 1" in text
    assert chart_png(report, "en").startswith(PNG)


def _adder(session: AsyncSession, customer_id: int):  # type: ignore[no-untyped-def]
    async def add(*, created: datetime, status: str = "closed", first_reply: datetime | None = None,
                  closed: datetime | None = None, assignee: str | None = None,
                  rating: int | None = None, rated: datetime | None = None,
                  comment: str | None = None, due: datetime | None = None) -> None:
        session.add(Ticket(provider="local", customer_id=customer_id, subject="s",
                           status=status, created_at=created, updated_at=created,
                           first_reply_at=first_reply, closed_at=closed,
                           assignee_name=assignee, rating=rating, rated_at=rated,
                           rating_comment=comment, reply_due_at=due))
        await session.flush()

    return add
