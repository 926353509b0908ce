"""Texts people read: usage answers Telegram accepts, unknown commands, /id,
command menus, plural forms and dates in TIMEZONE."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from bot.app import App
from bot.db.models import Ticket
from bot.menus import AGENT_COMMANDS, CUSTOMER_COMMANDS, menus
from bot.sandbox.telegram_server import FakeTelegramServer
from bot.services import render
from bot.services.stats import StatsReport, StatsService, as_text
from bridges.base import Capability
from tests.bot.conftest import (
    AGENT_CHAT,
    ANNA,
    BORIS,
    JANE,
    make_settings,
    running,
)
from tests.bot.test_flow import open_ticket

OTHER_GROUP = -1002000000002


@pytest.fixture(autouse=True)
def utc_after() -> Iterator[None]:
    yield
    render.set_timezone("UTC")  # the zone is process-wide; leave it as found


async def answer_to(tg: FakeTelegramServer, chat_id: int, message: dict[str, Any]) -> str:
    """The text the bot sent in reply to `message`."""
    record = await tg.wait_for(lambda s: next(
        (r for r in s.sent_to(chat_id) if r["reply_to"] == message["message_id"]),
        None))
    return str(record["text"])


# ---------------------------------------------------------------- usage and unknown commands


async def test_usage_texts_reach_the_agent(tg: FakeTelegramServer, app: App) -> None:
    """/refer and /link without arguments: their usage texts hold '<…>' and
    used to be refused by Telegram's HTML parser, so the agent got nothing."""
    topic, _ = await open_ticket(tg, JANE, "Usage please")
    refer = tg.user_sends_text(BORIS, AGENT_CHAT, "/refer", thread_id=topic)
    assert await answer_to(tg, AGENT_CHAT, refer) == "Usage: /refer <department or user>"
    link = tg.user_sends_text(BORIS, AGENT_CHAT, "/link", thread_id=topic)
    assert (await answer_to(tg, AGENT_CHAT, link)).startswith(
        "Usage: /link <helpdesk login or e-mail> (add your password")
    private = tg.user_sends_text(ANNA, ANNA, "/link")
    assert (await answer_to(tg, ANNA, private)).startswith(
        "Использование: /link <логин или e-mail в хелпдеске>")
    assert not [r for r in tg.requests if r[0] == "sendMessage" and "error" in str(r)]


async def test_an_unknown_command_from_an_agent(tg: FakeTelegramServer, app: App) -> None:
    topic, _ = await open_ticket(tg, JANE, "Unknown commands")
    typo = tg.user_sends_text(BORIS, AGENT_CHAT, "/clsoe now", thread_id=topic)
    answer = await answer_to(tg, AGENT_CHAT, typo)
    assert answer.startswith("Unknown command /clsoe.\n\nWrite in a ticket's topic")
    assert "/take, /assign @agent, /close" in answer
    # Meant for another bot in the group: not ours to answer.
    other = tg.user_sends_text(BORIS, AGENT_CHAT, "/poll@another_bot", thread_id=topic)
    mine = tg.user_sends_text(BORIS, AGENT_CHAT, "/nosuch@deskbridge_test_bot",
                              thread_id=topic)
    assert (await answer_to(tg, AGENT_CHAT, mine)).startswith("Unknown command /nosuch.")
    assert not [r for r in tg.sent_to(AGENT_CHAT) if r["reply_to"] == other["message_id"]]


async def test_a_non_agent_is_still_refused(tg: FakeTelegramServer, migrated_url: str,
                                            redis_url: str | None) -> None:
    settings = make_settings(tg, migrated_url, redis_url, agent_allowlist=[BORIS])
    async with running(settings):
        command = tg.user_sends_text(ANNA, AGENT_CHAT, "/clsoe")
        assert await answer_to(tg, AGENT_CHAT, command) == "⛔ This is for support agents only."


# ---------------------------------------------------------------- /id and joining groups


async def test_id_in_the_agent_chat_and_elsewhere(tg: FakeTelegramServer, app: App,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    asked = tg.user_sends_text(ANNA, AGENT_CHAT, "/id")
    assert await answer_to(tg, AGENT_CHAT, asked) == (
        f"The id of this chat: {AGENT_CHAT}\nFor .env: AGENT_CHAT_ID={AGENT_CHAT}")

    with caplog.at_level(logging.INFO, logger="deskbridge"):
        tg.add_bot_to_group(ANNA, OTHER_GROUP, "New support", can_manage_topics=False)
        asked = tg.user_sends_text(ANNA, OTHER_GROUP, "/id")
        assert await answer_to(tg, OTHER_GROUP, asked) == (
            f"id этого чата: {OTHER_GROUP}\nДля .env: AGENT_CHAT_ID={OTHER_GROUP}")
    [line] = [r.getMessage() for r in caplog.records if "added to" in r.getMessage()]
    assert line == (f"the bot was added to the supergroup 'New support' as administrator "
                    f"without Manage topics by Anna ({ANNA}): its id is {OTHER_GROUP}; to make "
                    f"it the agent chat, set AGENT_CHAT_ID={OTHER_GROUP}")

    tg.chats[OTHER_GROUP].type = "group"
    asked = tg.user_sends_text(ANNA, OTHER_GROUP, "/id")
    answer = await answer_to(tg, OTHER_GROUP, asked)
    assert answer.endswith("Telegram даст ей новый id, поэтому отправьте /id ещё раз.")


async def test_removal_from_the_agent_chat_is_logged(tg: FakeTelegramServer, app: App,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    tg.chats[AGENT_CHAT].owner_id = ANNA
    with caplog.at_level(logging.INFO, logger="deskbridge"):
        tg.set_bot_status(ANNA, AGENT_CHAT, "left")
        await tg.wait_updates_confirmed()
    assert any(r.levelno == logging.ERROR and "removed from the agent chat" in r.getMessage()
               for r in caplog.records)


# ---------------------------------------------------------------- menus


def _names(listed: list[dict[str, Any]]) -> list[str]:
    return [command["command"] for command in listed]


async def test_command_menus_are_registered(tg: FakeTelegramServer, app: App) -> None:
    private = json.dumps({"type": "all_private_chats"}, sort_keys=True)
    agents = json.dumps({"type": "chat", "chat_id": AGENT_CHAT}, sort_keys=True)
    await tg.wait_for(lambda s: len(s.commands) == 6)
    assert set(tg.commands) == {(scope, lang) for scope in (private, agents)
                                for lang in ("ru", "en", "")}
    customer = tg.commands[(private, "ru")]
    assert _names(customer) == ["new", "tickets", "language", "help", "start"]
    assert customer[0]["description"] == "Новое обращение"
    assert tg.commands[(private, "en")][0]["description"] == "New request"
    assert tg.commands[(private, "")][0]["description"] == "New request"
    # The local desk refers nowhere: no /refer in the agents' menu.
    assert _names(tg.commands[(agents, "en")]) == [
        "tickets", "take", "assign", "close", "reopen", "priority", "note", "link", "canned",
        "stats", "ban", "unban", "bans", "id", "help"]
    assert tg.commands[(agents, "ru")][1]["description"] == "Взять обращение"
    assert tg.commands[(agents, "")][1]["description"] == "Take this ticket"  # AGENT_LANGUAGE


def test_menus_follow_the_provider_capabilities() -> None:
    customer_side = frozenset({Capability.CREATE, Capability.ATTACHMENTS})  # like Plusofon
    listed = {(scope.type, lang): [c.command for c in commands]
              for scope, lang, commands in menus(AGENT_CHAT, "ru", customer_side)}
    assert listed[("chat", "en")] == ["tickets", "canned", "stats", "ban", "unban", "bans", "id",
                                      "help"]
    assert listed[("all_private_chats", None)] == ["new", "tickets", "language", "help",
                                                   "start"]
    everything = frozenset(Capability)
    listed = {(scope.type, lang): [c.command for c in commands]
              for scope, lang, commands in menus(AGENT_CHAT, "ru", everything)}
    assert len(listed[("chat", "ru")]) == len(AGENT_COMMANDS)
    assert len(listed[("all_private_chats", "ru")]) == len(CUSTOMER_COMMANDS)
    for (_, _), names in listed.items():
        assert len(names) == len(set(names))


# ---------------------------------------------------------------- plurals and dates


def _report(**figures: Any) -> StatsReport:
    values: dict[str, Any] = dict(
        now=datetime(2026, 3, 1, tzinfo=UTC), window_days=30, open=0, waiting=0,
        closed_today=0, total=0, overdue=0, first_reply_avg=None, first_reply_median=None,
        resolution_avg=None, resolution_median=None, resolved=0, avg_rating=5.0, ratings=1,
        rating_counts={5: 1}, per_agent=[], daily=[], comments=[])
    values.update(figures)
    return StatsReport(**values)


@pytest.mark.parametrize(("count", "russian", "english"), [
    (1, "1 оценка", "1 rating"), (3, "3 оценки", "3 ratings"), (5, "5 оценок", "5 ratings"),
    (21, "21 оценка", "21 ratings"),
])
def test_stats_count_in_words(count: int, russian: str, english: str) -> None:
    report = _report(ratings=count, rating_counts={5: count})
    assert f"({russian}: " in as_text(report, "ru")
    assert f"({english}: " in as_text(report, "en")
    assert "За последние 30 дней" in as_text(report, "ru")
    assert "За последний 1 день" in as_text(_report(window_days=1), "ru")


def test_dates_in_the_configured_zone() -> None:
    moment = datetime(2026, 1, 15, 21, 30, tzinfo=UTC)
    assert render.when(moment) == "2026-01-15 21:30 UTC"
    render.set_timezone("Europe/Moscow")
    assert render.when(moment) == "2026-01-16 00:30 MSK"
    assert render.short_when(moment) == "16.01 00:30 MSK"
    render.set_timezone("Asia/Almaty")  # its abbreviation is only "+05" (or "+06")
    assert render.when(moment).endswith(" Asia/Almaty")
    render.set_timezone("America/New_York")
    assert render.when(datetime(2026, 7, 1, 12, 0, tzinfo=UTC)) == "2026-07-01 08:00 EDT"


async def test_cards_show_times_in_timezone(tg: FakeTelegramServer, migrated_url: str,
                                            redis_url: str | None) -> None:
    settings = make_settings(tg, migrated_url, redis_url, timezone="Europe/Moscow")
    async with running(settings):
        _, card = await open_ticket(tg, JANE, "What time is it")
    assert " MSK\n" in card["text"] and " UTC" not in card["text"]
    opened = next(line for line in card["text"].splitlines() if line.startswith("Opened: "))
    stamp = datetime.strptime(opened.removeprefix("Opened: "), "%Y-%m-%d %H:%M MSK")
    moscow_now = datetime.now(UTC) + timedelta(hours=3)
    assert abs(stamp - moscow_now.replace(tzinfo=None)) < timedelta(minutes=2)


async def test_stats_days_are_days_in_timezone(tg: FakeTelegramServer, app: App) -> None:
    """Closed at 22:30 UTC on the 1st is the 2nd in Moscow: "closed today" on
    the 2nd there, not in UTC."""
    await open_ticket(tg, JANE, "Closed late in the evening")
    async with app.sessionmaker.begin() as session:
        await session.execute(update(Ticket).values(
            status="closed", created_at=datetime(2026, 3, 1, 20, tzinfo=UTC),
            closed_at=datetime(2026, 3, 1, 22, 30, tzinfo=UTC)))
    now = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    in_utc = await StatsService(app.sessionmaker).report(now)
    in_moscow = await StatsService(app.sessionmaker, ZoneInfo("Europe/Moscow")).report(now)
    assert (in_utc.closed_today, in_moscow.closed_today) == (0, 1)
    assert in_moscow.daily[-1][2] == 1 and in_utc.daily[-2][2] == 1
