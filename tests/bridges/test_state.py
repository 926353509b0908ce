from __future__ import annotations

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
