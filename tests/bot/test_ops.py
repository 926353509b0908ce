"""Operations: health and metrics endpoints (`deskbridge check`: test_check.py)."""

from __future__ import annotations

import httpx

from bot.app import App
from bot.sandbox.telegram_server import FakeTelegramServer
from tests.bot.conftest import AGENT_CHAT, ANNA, JANE
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
