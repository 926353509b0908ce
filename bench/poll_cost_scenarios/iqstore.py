"""iqstore: no feed across clients. A chat can only be read with its own
client's session, so the API forces one request per chat read. The bridge
reads a chat at every poll while it is busy (the bridge just wrote to it, or
it changed in the last five minutes) and a quiet one at intervals of a tenth
of its silence, at most every 30 minutes. Here every chat has been quiet for
a day; `changed` of them just had the customer write and an agent answer.
A cycle costs the busy chats plus the quiet ones due (about one in 120 per
15-second poll): it still grows with the number of chats, which the API
forces, but 120 times slower than reading them all."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from bench.poll_cost import Measurement
from bot.db.session import create_engine
from bot.sandbox.iqstore import FakeIqstore
from bridges.base import CustomerIdentity
from bridges.iqstore import IqstoreBridge
from bridges.iqstore.client import IqstoreClient
from bridges.iqstore.config import IqstoreSettings
from bridges.iqstore.mapping import local_id_for
from bridges.state import BridgeState, BridgeStateBase

POLL_INTERVAL = 15.0
QUIET = 24 * 3600.0


class _Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def measure(open_tickets: int, changed: int) -> Measurement:
    clock = _Clock()
    with tempfile.TemporaryDirectory() as folder:
        engine = create_engine(f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}")
        try:
            async with engine.begin() as connection:
                await connection.run_sync(BridgeStateBase.metadata.create_all)
            async with FakeIqstore(clock=clock) as fake:
                state = BridgeState(engine, "iqstore")
                conversations = await _seed(fake, state, open_tickets, clock)
                clock.now += QUIET
                settings = IqstoreSettings.from_env(fake.env())
                bridge = IqstoreBridge(IqstoreClient(settings), state, settings, engine,
                                       clock=clock)
                try:
                    cursor = (await bridge.fetch_changes(None)).cursor
                    for ref, conversation, client_id in conversations[:changed]:
                        customer = CustomerIdentity(customer_ref=ref, full_name=ref)
                        await bridge.post_customer_message(conversation, customer, "news?")
                        fake.agent_replies(client_id, "an answer")
                    clock.now += POLL_INTERVAL
                    requests = len(fake.requests)
                    events = rounds = 0
                    while True:  # one cycle: the scheduler follows `more` at once
                        changes = await bridge.fetch_changes(cursor)
                        cursor, rounds = changes.cursor, rounds + 1
                        events += len(changes.events)
                        if not changes.more:
                            break
                finally:
                    await bridge.aclose()
                calls = len(fake.requests) - requests
                return Measurement(calls=calls, events=events,
                                   note=f"{rounds} round(s); {calls - changed} quiet chat(s) due")
        finally:
            await engine.dispose()


async def _seed(fake: FakeIqstore, state: BridgeState, count: int,
                clock: _Clock) -> list[tuple[str, str, int]]:
    """`count` customers with a conversation each, written straight into the
    fake and the bridge's state (as `create_ticket` would leave them)."""
    rows: dict[str, str] = {}
    made = []
    at = int(clock.now * 1000)
    for number in range(count):
        ref = str(10_000 + number)
        client_id, token = fake.seed_client(f"Customer {number}")
        opening = fake.seed_message(client_id, "hello", local_id=local_id_for(f"c:{number}", 0))
        conversation = f"{client_id}:{opening}"
        rows |= {
            f"customer:{ref}": str(client_id),
            f"client:{client_id}": json.dumps({"token": token, "customer": ref}),
            f"seg:{conversation}": json.dumps({"customer": ref, "subject": "hello",
                                               "text": "hello", "key": f"c:{number}",
                                               "at": at}),
            f"act:{client_id}": json.dumps({"last": opening, "at": at}),
        }
        made.append((ref, conversation, client_id))
    await state.set_many(rows)
    return made
