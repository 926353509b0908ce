"""Webhook mode: Telegram posts updates to WEBHOOK_URL.

Every request must carry `X-Telegram-Bot-Api-Secret-Token` equal to
WEBHOOK_SECRET; anything else is answered 401 and not processed. Updates are
handled before the response (not in the background), so Telegram only sees
200 once the update is committed and redelivers it otherwise; the unique
(chat, message) keys make a redelivery harmless. Several processes may serve
the same URL behind a load balancer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from bot.config import split_host_port
from bot.startup import listen_error

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger("deskbridge.webhook")


def webhook_path(url: str) -> str:
    return urlsplit(url).path or "/"


def make_webhook_app(app: App) -> web.Application:
    settings = app.settings
    if settings.webhook_secret is None:
        raise ValueError("WEBHOOK_SECRET is required in webhook mode")
    web_app = web.Application()
    SimpleRequestHandler(
        dispatcher=app.dispatcher,
        bot=app.bot,
        secret_token=settings.webhook_secret.get_secret_value(),
        handle_in_background=False,
    ).register(web_app, path=webhook_path(settings.webhook_url or "/"))
    return web_app


async def serve_webhook(app: App, stop: asyncio.Event, *, register: bool = True) -> None:
    settings = app.settings
    assert settings.webhook_url and settings.webhook_secret
    runner = web.AppRunner(make_webhook_app(app), access_log=None)
    await runner.setup()
    host, port = split_host_port(settings.webhook_listen, 8081)
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise listen_error("WEBHOOK_LISTEN", settings.webhook_listen, exc) from None
    log.info("webhook server on %s:%s%s", host, port, webhook_path(settings.webhook_url))
    try:
        if register:
            await app.bot.set_webhook(
                settings.webhook_url,
                secret_token=settings.webhook_secret.get_secret_value(),
                allowed_updates=app.dispatcher.resolve_used_update_types(),
                drop_pending_updates=False,
            )
        app.announce_started()
        await stop.wait()
    finally:
        await runner.cleanup()
