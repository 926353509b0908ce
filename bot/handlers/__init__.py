"""aiogram routers, one per feature; thin entry points into the services."""

from __future__ import annotations

from aiogram import Router

from bot.handlers import agents, customer, errors


def setup() -> Router:
    router = Router(name=__name__)
    router.include_routers(errors.setup(), agents.setup(), customer.setup())
    return router
