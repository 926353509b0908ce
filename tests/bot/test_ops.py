"""Operations: health and metrics endpoints, `deskbridge check`."""

from __future__ import annotations

import httpx
import pytest

from bot.app import App
from bot.check import run_check
from bot.sandbox.telegram_server import FakeTelegramServer
from tests.bot.conftest import AGENT_CHAT, ANNA, JANE, make_settings, populate
from tests.bot.test_flow import open_ticket


async def test_health_and_metrics(tg: FakeTelegramServer, app: App) -> None:
    topic, _ = await open_ticket(tg, JANE, "Metrics please")
    tg.user_sends_text(ANNA, AGENT_CHAT, "ok", thread_id=topic)
    await tg.wait_for(lambda s: any("ok" in (r["text"] or "") for r in s.sent_to(JANE)))
    await app.poll_provider()
    base = f"http://{app.settings.http_listen}"
    async with httpx.AsyncClient() as client:
        health = await client.get(f"{base}/healthz")
        metrics = await client.get(f"{base}/metrics")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    body = metrics.text
    assert 'deskbridge_outbox_rows{status="done"}' in body
    done = float(body.split('deskbridge_outbox_rows{status="done"} ')[1].split()[0])
    assert done >= 5
    assert 'deskbridge_poll_lag_seconds{provider="local"}' in body
    assert "deskbridge_deliveries_total" in body


async def test_check_reports_what_works(tg: FakeTelegramServer, migrated_url: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(tg, migrated_url, None)
    assert await run_check(settings) == 0
    out = capsys.readouterr().out
    assert "[ok] Telegram: @deskbridge_test_bot" in out
    assert "forum topics are enabled" in out
    assert "[ok] can manage topics: True" in out
    assert "[ok] local: local desk" in out
    assert "no webhook registered (long polling); 0 pending update(s)" in out
    assert "123456:TEST" not in out  # never print the token


async def test_check_shows_the_webhook_and_its_last_error(
    tg: FakeTelegramServer, migrated_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tg, migrated_url, None, webhook_url="https://bot.example/hook",
                             webhook_secret="s3cret")
    async with httpx.AsyncClient() as client:
        await client.post(f"{tg.base_url}/bot{settings.telegram_bot_token.get_secret_value()}"
                          "/setWebhook", json={"url": "https://bot.example/hook"})
    tg.set_webhook_error("Connection refused")
    tg.user_sends_text(JANE, JANE, "queued while the webhook fails")
    await run_check(settings)
    out = capsys.readouterr().out
    assert "[!!] webhook https://bot.example/hook; 1 pending update(s)" in out
    assert "last error" in out and "Connection refused" in out


async def test_check_fails_without_topic_rights(migrated_url: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from tests.bot.conftest import TOKEN

    async with FakeTelegramServer(token=TOKEN) as server:
        populate(server)
        server.chats[AGENT_CHAT].bot_can_manage_topics = False
        assert await run_check(make_settings(server, migrated_url, None)) == 1
    assert "[!!] can manage topics: False" in capsys.readouterr().out
