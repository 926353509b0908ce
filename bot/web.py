"""`/healthz` and Prometheus `/metrics` on HTTP_LISTEN.

Gauges that live in the database (outbox depth and age, poll lag) are read
when Prometheus scrapes, so they are exact and cost nothing in between.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select

from bot.config import split_host_port
from bot.db.models import OutboxItem, PollCursor, utcnow

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger("deskbridge.web")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.outbox_depth = Gauge("deskbridge_outbox_rows", "Outbox rows by status",
                                  ["status"], registry=self.registry)
        self.outbox_oldest = Gauge("deskbridge_outbox_oldest_pending_seconds",
                                   "Age of the oldest pending outbox row",
                                   registry=self.registry)
        self.poll_lag = Gauge("deskbridge_poll_lag_seconds",
                              "Seconds since the provider was last polled successfully",
                              ["provider"], registry=self.registry)
        self.provider_calls_left = Gauge("deskbridge_provider_calls_left",
                                         "API calls the provider says are left",
                                         ["provider"], registry=self.registry)
        self.deliveries = Counter("deskbridge_deliveries", "Outbox rows delivered",
                                  registry=self.registry)
        self.failures = Counter("deskbridge_delivery_failures",
                                "Outbox rows that became dead letters", registry=self.registry)
        self.provider_held = Gauge("deskbridge_provider_held",
                                   "1 while the provider refuses our credentials",
                                   ["provider"], registry=self.registry)
        self.agent_chat_ok = Gauge("deskbridge_agent_chat_ok",
                                   "1 while the bot can post in the agent chat",
                                   registry=self.registry)
        self.telegram_429 = Counter("deskbridge_telegram_429",
                                    "Too Many Requests answers from the Bot API",
                                    registry=self.registry)


async def refresh(app: App) -> None:
    metrics = app.metrics
    async with app.sessionmaker() as session:
        counts = dict((await session.execute(
            select(OutboxItem.status, func.count()).group_by(OutboxItem.status))).all())
        oldest = await session.scalar(select(func.min(OutboxItem.created_at)).where(
            OutboxItem.status == "pending"))
        cursor = await session.get(PollCursor, app.settings.provider)
    for status in ("pending", "done", "dead"):
        metrics.outbox_depth.labels(status).set(counts.get(status, 0))
    metrics.agent_chat_ok.set(1 if app.agent_chat.reachable else 0)
    metrics.provider_held.labels(app.settings.provider).set(1 if app.hold.held else 0)
    metrics.outbox_oldest.set((utcnow() - oldest).total_seconds() if oldest else 0)
    calls_left = app.bridge.calls_left()
    if calls_left is not None:
        metrics.provider_calls_left.labels(app.settings.provider).set(calls_left)
    if cursor is not None and cursor.last_success_at is not None:
        lag = (utcnow() - cursor.last_success_at).total_seconds()
        metrics.poll_lag.labels(app.settings.provider).set(lag)


def make_web_app(app: App) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        try:
            await refresh(app)
        except Exception as exc:
            log.warning("health check failed: %s", exc)
            return web.json_response({"status": "fail", "error": type(exc).__name__},
                                     status=503)
        if app.hold.state is not None:
            return web.json_response({"status": "fail", "error": "provider refuses credentials",
                                      "check": app.hold.state.setting}, status=503)
        if not app.agent_chat.reachable:
            return web.json_response({"status": "fail", "error": "agent chat unreachable",
                                      "agent_chat_id": app.agent_chat.chat_id}, status=503)
        return web.json_response({"status": "ok", "provider": app.settings.provider})

    async def metrics(_: web.Request) -> web.Response:
        await refresh(app)
        return web.Response(body=generate_latest(app.metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    web_app = web.Application()
    web_app.router.add_get("/healthz", healthz)
    web_app.router.add_get("/metrics", metrics)
    return web_app


async def start_http(app: App) -> web.AppRunner:
    runner = web.AppRunner(make_web_app(app), access_log=None)
    await runner.setup()
    host, port = split_host_port(app.settings.http_listen, 8080)
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    log.info("health and metrics on http://%s:%s", host, port)
    return runner
