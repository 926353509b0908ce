"""`deskbridge check` tells the truth: exit code 0 only when everything the
bot needs works, and a `[!!]` line saying what to do for each thing that
does not (against the fake Bot API server, a real database and the fakes)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from bot.check import FAIL, NOTE, Report, check_inline, run_check
from bot.config import Settings
from bot.db.migrate import upgrade
from bot.sandbox.omnidesk import FakeOmnidesk
from bot.sandbox.telegram_server import FakeTelegramServer
from bridges.base import Capability
from tests.bot.conftest import AGENT_CHAT, JANE, TOKEN, make_settings, populate


@pytest.fixture(autouse=True)
def english(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "C.UTF-8")


@pytest.fixture
async def server() -> AsyncIterator[FakeTelegramServer]:
    async with FakeTelegramServer(token=TOKEN) as fake:
        populate(fake)
        yield fake


async def check(settings: Settings, **options: Any) -> tuple[int, list[str]]:
    lines: list[str] = []
    options.setdefault("ask", None)
    code = await run_check(settings, out=lines.append, **options)
    return code, lines


def failures(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("[!!]")]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_all_good(server: FakeTelegramServer, migrated_url: str,
                        redis_url: str | None) -> None:
    code, lines = await check(make_settings(server, migrated_url, redis_url))
    assert code == 0, lines
    assert not failures(lines)
    assert lines[0] == f"[ok] Telegram: @deskbridge_test_bot (id 123456) at {server.base_url}"
    assert "[--] long polling (no webhook); 0 update(s) waiting" in lines
    assert "[ok] agent chat: Support (-1001000000001)" in lines
    assert "[ok] forum topics are on: one topic per ticket" in lines
    assert "[ok] the bot may manage topics" in lines and "[ok] the bot may delete messages" in lines
    assert "[ok] the bot may pin messages" in lines
    assert any(line.startswith("[ok] local desk: 0 tickets") for line in lines)
    assert any(line.startswith("[ok] database ") and "migrated (revision" in line
               for line in lines)
    assert "[ok] inline mode is on" in lines
    assert lines[-1] == "All good: the bot has everything it needs."
    assert not any(TOKEN in line for line in lines)  # the token is never printed


FAILING: list[tuple[str, Callable[[FakeTelegramServer], None], str]] = [
    ("forum off", lambda s: setattr(s.chats[AGENT_CHAT], "is_forum", False),
     "[!!] forum topics are off: turn on Topics in the group's settings"),
    ("plain member", lambda s: setattr(s.chats[AGENT_CHAT], "bot_status", "member"),
     "[!!] the bot is a member of the agent chat, not an administrator: make it an "
     "administrator with the rights Manage topics, Delete messages and Pin messages"),
    ("no topic right", lambda s: setattr(s.chats[AGENT_CHAT], "bot_can_manage_topics", False),
     "[!!] the bot may not manage topics: give it the Manage topics right"),
    ("no delete right",
     lambda s: s.chats[AGENT_CHAT].bot_rights.update(can_delete_messages=False),
     "[!!] the bot may not delete messages"),
    ("no pin right",
     lambda s: s.chats[AGENT_CHAT].bot_rights.update(can_pin_messages=False),
     "[!!] the bot may not pin messages (it pins each ticket's card in its topic)"),
    ("inline off", lambda s: setattr(s, "inline_mode", False),
     "[!!] inline mode is off, so nobody can search the knowledge base: turn it on in "
     "@BotFather (/setinline, then choose @deskbridge_test_bot)"),
    ("chat unknown", lambda s: s.chats.pop(AGENT_CHAT),
     f"[!!] agent chat {AGENT_CHAT}: Telegram says Bad Request: chat not found; add the bot"),
    ("basic group", lambda s: setattr(s.chats[AGENT_CHAT], "type", "group"),
     f"[!!] agent chat {AGENT_CHAT} is a basic group: turn on Topics in its settings"),
]


@pytest.mark.parametrize(("breakage", "line"), [(b, line) for _, b, line in FAILING],
                         ids=[name for name, _, _ in FAILING])
async def test_each_broken_thing_fails_the_check(
    server: FakeTelegramServer, migrated_url: str,
    breakage: Callable[[FakeTelegramServer], None], line: str
) -> None:
    breakage(server)
    code, lines = await check(make_settings(server, migrated_url, None))
    assert code == 1
    [failure] = failures(lines)
    assert failure.startswith(line), lines
    assert lines[-1] == ("Checks failed: 1. Fix what the lines marked [!!] say, then run "
                         "deskbridge check again.")


async def test_a_refused_token(server: FakeTelegramServer, migrated_url: str) -> None:
    settings = make_settings(server, migrated_url, None, telegram_bot_token="42:not-this-bot")
    code, lines = await check(settings)
    assert code == 1
    assert failures(lines) == [
        "[!!] Telegram refused the token: copy TELEGRAM_BOT_TOKEN from @BotFather again, or "
        "issue a new one there (/token)"]
    assert "[ok] local desk" in " ".join(lines)  # the rest is still checked


async def test_telegram_unreachable(migrated_url: str) -> None:
    port = closed_port()
    server = FakeTelegramServer(token=TOKEN)
    server.base_url = f"http://127.0.0.1:{port}"  # never started
    code, lines = await check(make_settings(server, migrated_url, None))
    assert code == 1
    [failure] = failures(lines)
    assert failure.startswith(f"[!!] cannot reach the Bot API at http://127.0.0.1:{port}: ")


async def test_a_database_never_migrated(server: FakeTelegramServer, database_url: str) -> None:
    settings = make_settings(server, database_url, None)
    code, lines = await check(settings)
    assert code == 1
    [failure] = failures(lines)
    assert "is not migrated: run deskbridge migrate (or deskbridge check --migrate)" in failure
    assert "no such table" not in " ".join(lines)
    assert "[--] local desk: checked once the database is migrated" in lines

    asked: list[str] = []
    code, lines = await check(settings, ask=lambda q: asked.append(q) is None)
    assert code == 0, lines  # the operator said yes
    assert asked and asked[0].endswith("is not migrated. Migrate it now? [y/N]")
    assert any(line.endswith(": migrated now") for line in lines)


async def test_check_migrate_flag(server: FakeTelegramServer, database_url: str) -> None:
    code, lines = await check(make_settings(server, database_url, None), migrate=True)
    assert code == 0, lines
    code, lines = await check(make_settings(server, database_url, None))
    assert code == 0, lines


async def test_a_database_behind(server: FakeTelegramServer, database_url: str) -> None:
    await asyncio.to_thread(upgrade, database_url, "281e9e4db9e4")  # the first revision
    code, lines = await check(make_settings(server, database_url, None))
    assert code == 1
    assert "is not migrated: run deskbridge migrate" in failures(lines)[0]


async def test_an_unreachable_database(server: FakeTelegramServer) -> None:
    url = f"postgresql+asyncpg://bot:hunter2@127.0.0.1:{closed_port()}/desk"
    code, lines = await check(make_settings(server, url, None))
    assert code == 1
    assert failures(lines)[0].startswith(
        "[!!] cannot open the database 'postgresql+asyncpg://bot:***@127.0.0.1:")
    assert "hunter2" not in " ".join(lines)


async def test_an_unreachable_redis(server: FakeTelegramServer, migrated_url: str) -> None:
    url = f"redis://:pa55word@127.0.0.1:{closed_port()}/0"
    code, lines = await check(make_settings(server, migrated_url, url))
    assert code == 1
    [failure] = failures(lines)
    assert failure.startswith("[!!] cannot reach Redis at 'redis://:***@127.0.0.1:")
    assert "pa55word" not in " ".join(lines)


async def _register_webhook(server: FakeTelegramServer, url: str) -> None:
    async with httpx.AsyncClient() as client:
        await client.post(f"{server.base_url}/bot{TOKEN}/setWebhook", json={"url": url})


async def test_the_webhook(server: FakeTelegramServer, migrated_url: str) -> None:
    hook = "https://bot.example/hook"
    settings = make_settings(server, migrated_url, None, webhook_url=hook,
                             webhook_secret="s3cret")
    code, lines = await check(settings)
    assert code == 1
    assert failures(lines) == [
        f"[!!] no webhook registered although WEBHOOK_URL is {hook}: start the bot "
        "(deskbridge run) to register it; 0 update(s) waiting"]

    await _register_webhook(server, "https://elsewhere.example/hook")
    code, lines = await check(settings)
    assert code == 1
    assert failures(lines)[0].startswith(
        f"[!!] the webhook registered is https://elsewhere.example/hook, not WEBHOOK_URL {hook}")

    await _register_webhook(server, hook)
    code, lines = await check(settings)
    assert code == 0, lines
    assert f"[ok] webhook {hook}; 0 update(s) waiting" in lines

    server.set_webhook_error("Connection refused")
    server.user_sends_text(JANE, JANE, "queued while the webhook fails")
    code, lines = await check(settings)
    assert code == 1
    [failure] = failures(lines)
    assert failure.startswith(f"[!!] webhook {hook}; 1 update(s) waiting; last error at ")
    assert "Connection refused" in failure

    # Without WEBHOOK_URL a registered webhook is worth knowing, not a failure:
    # `deskbridge run` removes it.
    code, lines = await check(make_settings(server, migrated_url, None))
    assert code == 0
    assert f"[--] a webhook is registered at {hook} but WEBHOOK_URL is not set" in lines[1]


async def test_provider_credentials(server: FakeTelegramServer, migrated_url: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeOmnidesk() as desk:
        for name, value in desk.env(api_key="wrong-key").items():
            monkeypatch.setenv(name, value)
        code, lines = await check(make_settings(server, migrated_url, None,
                                                provider="omnidesk"))
        assert code == 1
        [failure] = failures(lines)
        assert failure.startswith("[!!] omnidesk: ") and failure.endswith(
            "; check the OMNIDESK_* settings")
        assert "wrong-key" not in " ".join(lines)

        monkeypatch.setenv("OMNIDESK_API_KEY", desk.api_key)
        code, lines = await check(make_settings(server, migrated_url, None,
                                                provider="omnidesk"))
        assert code == 0, lines
        assert any(line.startswith("[--] omnidesk can: ") for line in lines)


def test_inline_mode_matters_only_with_a_knowledge_base() -> None:
    from aiogram.types import User

    me = User(id=1, is_bot=True, first_name="Desk", username="desk_bot",
              supports_inline_queries=False)
    lines: list[str] = []
    report = Report("en", lines.append)
    check_inline(me, frozenset({Capability.CREATE}), report)
    assert report.failures == 0 and lines[0].startswith(f"[{NOTE}] inline mode is off")
    check_inline(me, frozenset({Capability.KNOWLEDGE_BASE}), report)
    assert report.failures == 1 and lines[1].startswith(f"[{FAIL}] inline mode is off")


async def test_in_russian(server: FakeTelegramServer, migrated_url: str,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANG", "ru_RU.UTF-8")
    server.chats[AGENT_CHAT].is_forum = False
    code, lines = await check(make_settings(server, migrated_url, None))
    assert code == 1
    assert failures(lines)[0].startswith("[!!] темы выключены: включите «Темы»")
    assert lines[-1].startswith("Не пройдено проверок: 1.")
