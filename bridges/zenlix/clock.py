"""Time as the bridge sees it. Zenlix derives a ticket's hash from its
creation second (providers/zenlix.md), so the bridge paces creations by the
wall clock; tests hand the bridge and the fake server one faster clock."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Seconds since the epoch."""

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
