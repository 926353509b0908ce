from __future__ import annotations

import pytest

from bot.db.session import create_engine
from bridges.state import BridgeState


async def test_state_is_namespaced_and_upserts(migrated_url: str) -> None:
    engine = create_engine(migrated_url)
    try:
        one, two = BridgeState(engine, "zenlix"), BridgeState(engine, "iqstore")
        assert await one.get("k") is None
        await one.set("k", "v1")
        await one.set("k", "v2")
        await two.set("k", "other")
        await one.set_many({"a": "1", "b": "2"})
        assert await one.get("k") == "v2"
        assert await two.get("k") == "other"
        assert await one.get_many(["a", "b", "missing"]) == {"a": "1", "b": "2"}
        await one.delete("k")
        assert await one.get("k") is None
    finally:
        await engine.dispose()


async def test_prefixed_reads_and_deleting_many(migrated_url: str) -> None:
    engine = create_engine(migrated_url)
    try:
        one, two = BridgeState(engine, "zenlix"), BridgeState(engine, "iqstore")
        await one.set_many({"fresh:a": "a", "fresh:b": "b", "freshly": "x", "ticket:a": "t"})
        await two.set("fresh:c", "c")
        assert await one.get_prefixed("fresh:", 10) == {"fresh:a": "a", "fresh:b": "b"}
        assert len(await one.get_prefixed("fresh:", 1)) == 1
        await one.delete_many(["fresh:a", "ticket:a", "missing"])
        assert await one.get_prefixed("fresh:", 10) == {"fresh:b": "b"}
        assert await one.get("ticket:a") is None
        assert await two.get("fresh:c") == "c"
        with pytest.raises(ValueError):
            await one.get_prefixed("fresh_", 10)  # LIKE would take `_` as a wildcard
    finally:
        await engine.dispose()
