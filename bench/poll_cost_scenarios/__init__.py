"""One module per provider: `async def measure(open_tickets, changed) -> Measurement`,
plus optional `SIZES`, `CHANGED` and `async def extra() -> list[str]`."""
