"""What one poll cycle costs, per provider, as the number of open tickets and
of tickets changed since the last cycle grow.

Each provider's scenario (bench/poll_cost_scenarios/<provider>.py) fills its
helpdesk stand-in (a fake helpdesk on loopback, or the local desk's tables),
polls once to set the cursor, changes some tickets, and counts the calls the
next cycle makes, at the fake (HTTP requests) or at the database (statements).
The target: cost grows with the changed tickets, never with the open ones.

    python -m bench.poll_cost [provider ...]
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import sys
import time
from dataclasses import dataclass, field

import bench.poll_cost_scenarios as scenarios

DEFAULT_SIZES = (100, 1_000, 10_000)
DEFAULT_CHANGED = (0, 10, 100)


@dataclass(frozen=True, slots=True)
class Measurement:
    calls: int  # calls one poll cycle made
    unit: str = "HTTP requests"
    events: int = 0  # change events the cycle returned
    note: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def providers(selected: list[str]) -> list[str]:
    names = [m.name for m in pkgutil.iter_modules(scenarios.__path__)]
    return [n for n in names if not selected or n in selected]


async def run(selected: list[str]) -> None:
    print(f"{'provider':<10} {'open':>7} {'changed':>8} {'calls/cycle':>12} {'events':>7}  "
          f"{'unit':<16} {'seconds':>8}  note")
    for name in providers(selected):
        module = importlib.import_module(f"bench.poll_cost_scenarios.{name}")
        for open_tickets in getattr(module, "SIZES", DEFAULT_SIZES):
            for changed in getattr(module, "CHANGED", DEFAULT_CHANGED):
                if changed > open_tickets:
                    continue
                started = time.perf_counter()
                result: Measurement = await module.measure(open_tickets, changed)
                took = time.perf_counter() - started
                print(f"{name:<10} {open_tickets:>7} {changed:>8} {result.calls:>12} "
                      f"{result.events:>7}  {result.unit:<16} {took:>8.1f}  {result.note}",
                      flush=True)
        if hasattr(module, "extra"):
            for line in await module.extra():
                print(f"{name:<10} {line}")


if __name__ == "__main__":
    asyncio.run(run(sys.argv[1:]))
