"""Maps a `PROVIDER` name to the factory that builds its bridge.

Every subpackage of `bridges` is a provider: it registers its factory with
`@register(name)` when imported. `create_bridge` imports the one asked for
lazily, so an unused provider costs nothing; adding a provider is adding its
subpackage.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from bridges.base import HelpdeskBridge


@dataclass(frozen=True, slots=True)
class BridgeDeps:
    """What a factory may use. Each provider reads its own settings
    (`bridges.settings`): from `env` when given (the bot's settings, or a
    test's), else from the process environment and `.env`."""

    engine: AsyncEngine
    env: Mapping[str, str] | None = None
    transport: httpx.AsyncBaseTransport | None = None  # injectable for tests
    extra: dict[str, Any] = field(default_factory=dict)


BridgeFactory = Callable[[BridgeDeps], Awaitable[HelpdeskBridge]]

_FACTORIES: dict[str, BridgeFactory] = {}


def register(name: str) -> Callable[[BridgeFactory], BridgeFactory]:
    def decorator(factory: BridgeFactory) -> BridgeFactory:
        _FACTORIES[name] = factory
        return factory

    return decorator


def providers() -> list[str]:
    """The subpackages of `bridges`: every provider there is."""
    package = importlib.import_module("bridges")
    return sorted(module.name for module in pkgutil.iter_modules(package.__path__)
                  if module.ispkg)


def available() -> list[str]:
    """Providers whose subpackage registered a factory."""
    for name in providers():
        _try_import(name)
    return sorted(_FACTORIES)


def _try_import(name: str) -> None:
    if name in _FACTORIES:
        return
    try:
        importlib.import_module(f"bridges.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"bridges.{name}":
            raise


async def create_bridge(name: str, deps: BridgeDeps) -> HelpdeskBridge:
    _try_import(name)
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(
            f"unknown provider {name!r}; available: {', '.join(available())}"
        ) from None
    return await factory(deps)
