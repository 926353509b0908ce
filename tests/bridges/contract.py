"""Harnesses for the bridge contract suite (`test_contract.py`).

Every bridge runs the same behavioural tests. A provider joins the suite by
adding a module `harness_<provider>.py` here that defines `HARNESS`, a
`BridgeHarness`: its `make(options)` is an async
context manager that builds the bridge against whatever stands in for the
helpdesk (the local desk's tables, a fake helpdesk on loopback...), yields
`(bridge, helpers)` and tears everything down on exit. `helpers` does what
the suite needs beyond the contract, acting as the helpdesk itself.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from uuid import uuid4

from sqlalchemy import make_url, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bridges.base import AgentIdentity, Capabilities, Capability, HelpdeskBridge
from bridges.local import LocalDeskBase, LocalDeskBridge
from bridges.local.models import LocalKbArticle
from bridges.registry import BridgeDeps, create_bridge

# A PostgreSQL URL (postgresql+asyncpg://...) runs the database-backed
# harnesses there instead of on a SQLite file per test.
TEST_DATABASE_URL_ENV = "TEST_DATABASE_URL"


@dataclass(frozen=True, slots=True)
class HarnessOptions:
    tmp_path: Path
    # Events per `fetch_changes` call; only for harnesses whose
    # `page_size_configurable` is set.
    page_size: int | None = None


class BridgeHelpers(Protocol):
    """What the suite needs beyond the contract."""

    # A well-formed ticket id that no ticket has.
    @property
    def unknown_ticket_id(self) -> str: ...

    # An agent the helpdesk knows, for replies and assignment.
    @property
    def agent(self) -> AgentIdentity: ...

    async def seed_article(
        self, title: str, text: str, *, public: bool, active: bool = True
    ) -> None:
        """Put a knowledge-base article into the helpdesk."""


BridgeUnderTest = tuple[HelpdeskBridge, BridgeHelpers]
MakeBridge = Callable[[HarnessOptions], AbstractAsyncContextManager[BridgeUnderTest]]


@dataclass(frozen=True, slots=True)
class BridgeHarness:
    name: str  # the provider's registry name
    make: MakeBridge
    # Exactly what the bridge must declare. Tests skip what a bridge cannot
    # do; pinning the set here makes a capability lost by mistake fail the
    # suite instead of silently skipping its tests.
    capabilities: Capabilities
    echoes_origin_key: bool = False
    echoes_attachment_ref: bool = False
    page_size_configurable: bool = False


# -- local desk ----------------------------------------------------------------

# The local desk knows any agent the bot names; no linking needed.
LOCAL_AGENT = AgentIdentity(agent_ref="tg:2001", full_name="Boris Agent")


@dataclass(frozen=True, slots=True)
class LocalDeskHelpers:
    bridge: LocalDeskBridge
    engine: AsyncEngine
    unknown_ticket_id: str = "987654321"
    agent: AgentIdentity = LOCAL_AGENT

    async def seed_article(
        self, title: str, text: str, *, public: bool, active: bool = True
    ) -> None:
        article = await self.bridge.add_article(title, text, public=public)
        if not active:
            # The bridge has no "deactivate"; the desk's own admin would.
            async with self.engine.begin() as connection:
                await connection.execute(
                    update(LocalKbArticle)
                    .where(LocalKbArticle.id == int(article.remote_id))
                    .values(active=False)
                )


@asynccontextmanager
async def local_desk_database(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An engine with the local desk's tables, on `TEST_DATABASE_URL` when set
    (tables dropped afterwards) or else on a fresh SQLite file."""
    url = os.environ.get(TEST_DATABASE_URL_ENV)
    if not url:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'local.db'}")
        try:
            async with engine.begin() as connection:
                await connection.run_sync(LocalDeskBase.metadata.create_all)
            yield engine
        finally:
            await engine.dispose()
        return

    # On a shared server, each test gets its own schema so that parallel
    # runs (and other suites using the same database) never see its tables.
    schema = f"contract_{uuid4().hex[:12]}" if _is_postgresql(url) else None
    engine = create_async_engine(
        url, execution_options={"schema_translate_map": {None: schema}} if schema else {}
    )
    try:
        async with engine.begin() as connection:
            if schema:
                await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
            await connection.run_sync(LocalDeskBase.metadata.create_all)
        yield engine
    finally:
        async with engine.begin() as connection:
            await connection.run_sync(LocalDeskBase.metadata.drop_all)
            if schema:
                await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await engine.dispose()


@asynccontextmanager
async def local_desk(options: HarnessOptions) -> AsyncIterator[LocalDeskHelpers]:
    async with local_desk_database(options.tmp_path) as engine:
        if options.page_size is None:
            # Through the registry, as the application builds it.
            bridge = await create_bridge("local", BridgeDeps(engine=engine))
            assert isinstance(bridge, LocalDeskBridge)
        else:
            bridge = LocalDeskBridge(engine, page_size=options.page_size)
        try:
            yield LocalDeskHelpers(bridge=bridge, engine=engine)
        finally:
            await bridge.aclose()


@asynccontextmanager
async def _make_local(options: HarnessOptions) -> AsyncIterator[BridgeUnderTest]:
    async with local_desk(options) as helpers:
        yield helpers.bridge, helpers


def _is_postgresql(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


LOCAL_HARNESS = BridgeHarness(
    name="local",
    make=_make_local,
    capabilities=frozenset(Capability) - {Capability.DEPARTMENTS, Capability.REFER},
    echoes_origin_key=True,
    echoes_attachment_ref=True,
    page_size_configurable=True,
)


def _discover() -> list[BridgeHarness]:
    """The local desk's harness, then `HARNESS` of every `harness_<provider>.py`
    beside this file: a provider joins the suite by adding that one module."""
    found = [LOCAL_HARNESS]
    for path in sorted(Path(__file__).parent.glob("harness_*.py")):
        module = importlib.import_module(f"{__package__}.{path.stem}")
        found.append(module.HARNESS)
    return found


HARNESSES: list[BridgeHarness] = _discover()
