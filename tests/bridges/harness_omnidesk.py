"""The Omnidesk bridge in the contract suite: built through the registry, as
the application builds it, against the fake Omnidesk on loopback, with its
`BridgeState` table on SQLite or `TEST_DATABASE_URL`."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.sandbox.omnidesk import FakeOmnidesk
from bridges.base import AgentIdentity, Capability
from bridges.omnidesk import OmnideskBridge, OmnideskSettings
from bridges.registry import BridgeDeps, create_bridge
from bridges.state import BridgeState, BridgeStateBase
from tests.bridges.contract import (
    TEST_DATABASE_URL_ENV,
    BridgeHarness,
    BridgeUnderTest,
    HarnessOptions,
)

CHANNEL = "cch7"


@dataclass(frozen=True, slots=True)
class OmnideskHelpers:
    desk: FakeOmnidesk
    unknown_ticket_id: str = "987654321"

    @property
    def agent(self) -> AgentIdentity:
        """The API key's own staff member, linked."""
        staff = self.desk.store.staff[self.desk.api_staff_id]
        return AgentIdentity(agent_ref="tg:2001", full_name=staff["staff_full_name"],
                             remote_agent_id=str(self.desk.api_staff_id))

    async def seed_article(
        self, title: str, text: str, *, public: bool, active: bool = True
    ) -> None:
        self.desk.add_article(title, text, access_type="public" if public else "staff_only",
                              active=active)


@asynccontextmanager
async def bridge_state_database(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An engine with the `bridge_state` table: a SQLite file, or a schema of
    its own on `TEST_DATABASE_URL` (dropped afterwards)."""
    url = os.environ.get(TEST_DATABASE_URL_ENV) or f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"
    postgres = make_url(url).get_backend_name() == "postgresql"
    schema = f"omnidesk_{uuid4().hex[:12]}" if postgres else None
    engine = create_async_engine(
        url, execution_options={"schema_translate_map": {None: schema}} if schema else {})
    try:
        async with engine.begin() as connection:
            if schema:
                await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
            await connection.run_sync(BridgeStateBase.metadata.create_all)
        yield engine
    finally:
        async with engine.begin() as connection:
            if schema:
                await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await engine.dispose()


@asynccontextmanager
async def _make(options: HarnessOptions) -> AsyncIterator[BridgeUnderTest]:
    async with bridge_state_database(options.tmp_path) as engine, FakeOmnidesk() as desk:
        desk.add_channel(CHANNEL)
        bridge = await create_bridge("omnidesk", BridgeDeps(engine=engine,
                                                            env=desk.env(channel=CHANNEL)))
        assert isinstance(bridge, OmnideskBridge)
        try:
            yield bridge, OmnideskHelpers(desk)
        finally:
            await bridge.aclose()


HARNESS = BridgeHarness(
    name="omnidesk",
    make=_make,
    capabilities=frozenset(Capability),
    # The bridge hands back the keys of its own calls itself (BridgeState).
    echoes_origin_key=True,
    echoes_attachment_ref=False,
)


@asynccontextmanager
async def omnidesk_bridge(
    desk: FakeOmnidesk,
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
    clock: Callable[[], float] | None = None,
    cases_per_poll: int | None = None,
) -> AsyncIterator[OmnideskBridge]:
    """A bridge against `desk`, built directly (for a clock or a case budget)."""
    options: dict[str, Any] = {}
    if clock is not None:
        options["clock"] = clock
    if cases_per_poll is not None:
        options["cases_per_poll"] = cases_per_poll
    settings = OmnideskSettings.from_env(env or desk.env())
    async with bridge_state_database(tmp_path) as engine:
        bridge = OmnideskBridge(settings, BridgeState(engine, "omnidesk"), **options)
        try:
            yield bridge
        finally:
            await bridge.aclose()
