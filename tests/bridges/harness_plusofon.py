"""Plusofon in the contract suite: the bridge against the fake Plusofon on
loopback, with its `BridgeState` on the suite's database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.sandbox.plusofon import FakePlusofon
from bridges.base import AgentIdentity, Capability
from bridges.registry import BridgeDeps, create_bridge
from bridges.state import BridgeStateBase
from tests.bridges.contract import (
    LOCAL_AGENT,
    BridgeHarness,
    BridgeUnderTest,
    HarnessOptions,
    local_desk_database,
)


@dataclass(frozen=True, slots=True)
class PlusofonHelpers:
    fake: FakePlusofon
    unknown_ticket_id: str = "987654321"
    # Plusofon has no agent side; the suite only needs a well-formed identity.
    agent: AgentIdentity = LOCAL_AGENT

    async def seed_article(
        self, title: str, text: str, *, public: bool, active: bool = True
    ) -> None:
        raise NotImplementedError("Plusofon has no knowledge base")


@asynccontextmanager
async def bridge_state_database(options: HarnessOptions) -> AsyncIterator[AsyncEngine]:
    """The suite's database (SQLite, or a schema of TEST_DATABASE_URL) with
    the `bridge_state` table the customer-side bridges keep their state in."""
    async with local_desk_database(options.tmp_path) as engine:
        async with engine.begin() as connection:
            await connection.run_sync(BridgeStateBase.metadata.create_all)
        yield engine


@asynccontextmanager
async def _make(options: HarnessOptions) -> AsyncIterator[BridgeUnderTest]:
    async with FakePlusofon() as fake, bridge_state_database(options) as engine:
        bridge = await create_bridge("plusofon", BridgeDeps(engine=engine, env=fake.env()))
        try:
            yield bridge, PlusofonHelpers(fake)
        finally:
            await bridge.aclose()


HARNESS = BridgeHarness(
    name="plusofon",
    make=_make,
    capabilities=frozenset(
        {Capability.CREATE, Capability.REPLY_AS_CUSTOMER, Capability.ATTACHMENTS}
    ),
    # The bridge keeps the key of every post it writes and hands it back.
    echoes_origin_key=True,
)
