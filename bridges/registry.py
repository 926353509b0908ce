"""Maps a `PROVIDER` name to the factory that builds its bridge.

Providers register themselves on import of their subpackage; `create_bridge`
imports the subpackage lazily so that an unused provider costs nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from bridges.base import HelpdeskBridge


@dataclass(frozen=True, slots=True)
class BridgeDeps:
    """What a factory may use. Each provider reads its own settings from
    `env` (the process environment plus `.env`)."""

    engine: AsyncEngine
    env: dict[str, str] = field(default_factory=dict)
    transport: httpx.AsyncBaseTransport | None = None  # injectable for tests
    extra: dict[str, Any] = field(default_factory=dict)


BridgeFactory = Callable[[BridgeDeps], Awaitable[HelpdeskBridge]]

_FACTORIES: dict[str, BridgeFactory] = {}
KNOWN_PROVIDERS = ("local", "omnidesk", "zenlix", "plusofon", "iqstore")


def register(name: str) -> Callable[[BridgeFactory], BridgeFactory]:
    def decorator(factory: BridgeFactory) -> BridgeFactory:
        _FACTORIES[name] = factory
        return factory

    return decorator


def available() -> list[str]:
    """Providers whose subpackage exists and registered a factory."""
    for name in KNOWN_PROVIDERS:
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
