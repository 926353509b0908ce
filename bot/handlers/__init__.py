"""aiogram routers, one per feature; thin entry points into the services."""

from __future__ import annotations

from aiogram import Router

from bot.handlers import (
    agents,
    bans,
    canned,
    customer,
    dead_letters,
    edits,
    errors,
    fallback,
    groups,
    inline,
    satisfaction,
    stats,
)


def setup() -> Router:
    router = Router(name=__name__)
    # The agent-toolkit routers come before `agents` and `customer`: those end
    # in catch-alls (refusals, "a message to a ticket") that would take their updates.
    router.include_routers(errors.setup(), groups.setup(), inline.setup(), canned.setup(),
                           dead_letters.setup(), stats.setup(), bans.setup(),
                           satisfaction.setup(), edits.setup(), agents.setup(),
                           customer.setup(), fallback.setup())
    return router
