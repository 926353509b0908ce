"""The Zenlix bridge in the contract suite: built through the registry from an
env dict, against the fake Zenlix (bot/sandbox/zenlix.py) on loopback, with
its BridgeState table on SQLite or on TEST_DATABASE_URL.

Zenlix derives ticket hashes from the creation second, so the bridge creates
at most one ticket per second; the bridge and the fake share a clock that
runs `SPEED` times faster, which keeps that rule (and the fake's collisions)
real while the suite stays quick.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from uuid import uuid4

from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.sandbox.zenlix import CHIEF, FakeZenlix
from bridges.base import AgentIdentity, Capability
from bridges.registry import BridgeDeps, create_bridge
from bridges.state import BridgeStateBase
from bridges.zenlix import ZenlixBridge

if TYPE_CHECKING:
    from tests.bridges.contract import BridgeHarness, BridgeUnderTest, HarnessOptions

SPEED = 20.0
SERVICE_LOGIN, SERVICE_PASSWORD = "deskbot", "service-secret-4711"
AGENT_LOGIN, AGENT_PASSWORD = "boris", "boris-secret-0815"


class FastClock:
    """Wall-clock time running `speed` times faster than real time."""

    def __init__(self, speed: float = SPEED) -> None:
        self.speed = speed
        self._wall = time.time()
        self._origin = time.monotonic()

    def time(self) -> float:
        return self._wall + (time.monotonic() - self._origin) * self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.speed)


@dataclass
class ZenlixWorld:
    """Who is who at the fake Zenlix."""

    service: str = ""  # the bridge's account, a chief
    boris: str = ""  # an ordinary agent of unit 1
    olga: str = ""  # another agent, of units 1 and 2
    anna: str = ""  # the contract suite's customer, filed as "Customer Anna"
    guest: str = ""  # the default client
    units: dict[int, str] = field(default_factory=dict)


def populate(fake: FakeZenlix) -> ZenlixWorld:
    world = ZenlixWorld()
    world.units = {1: "Support", 2: "Billing"}
    for unit_id, name in world.units.items():
        fake.add_unit(unit_id, name)
    fake.add_subject(1, "General")
    fake.add_subject(2, "VPN is down")
    world.service = fake.add_staff(SERVICE_LOGIN, SERVICE_PASSWORD, "Desk Bot", priv=CHIEF,
                                   units=(1, 2))
    world.boris = fake.add_staff(AGENT_LOGIN, AGENT_PASSWORD, "Boris Agent", units=(1,))
    world.olga = fake.add_staff("olga", "olga-secret", "Olga Petrova", units=(1, 2))
    world.anna = fake.add_client("Customer Anna", tel="+7 (916) 000-11-22")
    world.guest = fake.add_client("Telegram Guest")
    return world


def zenlix_env(fake: FakeZenlix, world: ZenlixWorld, **overrides: str) -> dict[str, str]:
    env = {
        "ZENLIX_BASE_URL": fake.base_url,
        "ZENLIX_LOGIN": SERVICE_LOGIN,
        "ZENLIX_PASSWORD": SERVICE_PASSWORD,
        "ZENLIX_DEFAULT_CLIENT": world.guest,
        "ZENLIX_TIMEOUT_SECONDS": "2",
    }
    env.update(overrides)
    return env


@asynccontextmanager
async def bridge_state_database(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An engine with the `bridge_state` table: a SQLite file, or a schema of
    its own on TEST_DATABASE_URL (dropped afterwards)."""
    url = os.environ.get("TEST_DATABASE_URL") or f"sqlite+aiosqlite:///{tmp_path / 'zx.db'}"
    postgres = make_url(url).get_backend_name() == "postgresql"
    schema = f"zenlix_{uuid4().hex[:12]}" if postgres else None
    engine = create_async_engine(
        url, execution_options={"schema_translate_map": {None: schema}} if schema else {})
    try:
        async with engine.begin() as connection:
            if schema:
                await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
            await connection.run_sync(BridgeStateBase.metadata.create_all)
        yield engine
    finally:
        if schema:
            async with engine.begin() as connection:
                await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await engine.dispose()


@dataclass(frozen=True, slots=True)
class ZenlixHelpers:
    bridge: ZenlixBridge
    fake: FakeZenlix
    world: ZenlixWorld
    engine: AsyncEngine
    clock: Clock
    agent: AgentIdentity  # Boris, linked to his Zenlix account
    unknown_ticket_id: str = "f" * 32

    async def seed_article(
        self, title: str, text: str, *, public: bool, active: bool = True
    ) -> None:
        raise NotImplementedError("Zenlix's API has no knowledge base")


class Clock(Protocol):
    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


@asynccontextmanager
async def zenlix_desk(
    tmp_path: Path, *, strict: bool = True, clock: Clock | None = None, **env: str
) -> AsyncIterator[ZenlixHelpers]:
    """The fake Zenlix, populated, and a bridge built through the registry;
    both on `clock` (a FastClock unless given)."""
    clock = clock or FastClock()
    async with FakeZenlix(clock=clock.time, strict=strict) as fake:
        world = populate(fake)
        async with bridge_state_database(tmp_path) as engine:
            bridge = await create_bridge("zenlix", BridgeDeps(
                engine=engine, env=zenlix_env(fake, world, **env),
                extra={"zenlix_clock": clock}))
            assert isinstance(bridge, ZenlixBridge)
            try:
                linked = await bridge.find_agent(AGENT_LOGIN, AGENT_PASSWORD)
                assert linked is not None
                agent = AgentIdentity("tg:2001", "Boris Agent",
                                      remote_agent_id=linked.remote_agent_id)
                yield ZenlixHelpers(bridge, fake, world, engine, clock, agent)
            finally:
                await bridge.aclose()


@asynccontextmanager
async def _make(options: HarnessOptions) -> AsyncIterator[BridgeUnderTest]:
    async with zenlix_desk(options.tmp_path) as helpers:
        yield helpers.bridge, helpers


ZENLIX_CAPABILITIES = frozenset({
    Capability.CREATE, Capability.REPLY_AS_CUSTOMER, Capability.REPLY_AS_AGENT,
    Capability.ASSIGN, Capability.CLOSE_REOPEN, Capability.DEPARTMENTS,
    Capability.REFER, Capability.AGENT_ACCOUNTS,
})
_harness: BridgeHarness | None = None


def __getattr__(name: str) -> Any:
    """`HARNESS`, built on first use (PEP 562): `contract` imports this module
    to collect it, and other tests import this module's helpers first, so
    importing `contract` up here would be a cycle in one order or the other."""
    global _harness
    if name != "HARNESS":
        raise AttributeError(name)
    if _harness is None:
        from tests.bridges.contract import BridgeHarness

        _harness = BridgeHarness(name="zenlix", make=_make, capabilities=ZENLIX_CAPABILITIES,
                                 echoes_origin_key=True)
    return _harness
