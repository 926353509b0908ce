"""iqstore in the contract suite: the bridge against the fake iqstore on
loopback, customer side only (anonymous signup), with its `BridgeState` on
the suite's database.

The agent side is left out here on purpose: agent replies work only for
conversations whose iqstore ticket is known, which the contract cannot
express (see test_iqstore.py for that side).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bot.sandbox.iqstore import FakeIqstore
from bridges.base import AgentIdentity, Capability
from bridges.registry import BridgeDeps, create_bridge
from tests.bridges.contract import LOCAL_AGENT, BridgeHarness, BridgeUnderTest, HarnessOptions
from tests.bridges.harness_plusofon import bridge_state_database


@dataclass(frozen=True, slots=True)
class IqstoreHelpers:
    fake: FakeIqstore
    unknown_ticket_id: str = "999999:999999"
    agent: AgentIdentity = LOCAL_AGENT

    async def seed_article(
        self, title: str, text: str, *, public: bool, active: bool = True
    ) -> None:
        raise NotImplementedError("iqstore's documented APIs have no knowledge base")


@asynccontextmanager
async def _make(options: HarnessOptions) -> AsyncIterator[BridgeUnderTest]:
    async with FakeIqstore() as fake, bridge_state_database(options) as engine:
        bridge = await create_bridge("iqstore", BridgeDeps(engine=engine, env=fake.env()))
        try:
            yield bridge, IqstoreHelpers(fake)
        finally:
            await bridge.aclose()


HARNESS = BridgeHarness(
    name="iqstore",
    make=_make,
    capabilities=frozenset(
        {Capability.CREATE, Capability.REPLY_AS_CUSTOMER, Capability.ATTACHMENTS}
    ),
    echoes_origin_key=True,  # LocalId is the idempotency key
)
