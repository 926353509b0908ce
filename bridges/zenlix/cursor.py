"""The poll cursor (a JSON string the bot stores for the bridge) and the
adaptive schedule of comment checks.

Zenlix's `ticket_list` has no "since" filter and says nothing about comments
(providers/zenlix.md), so the only way to see a new comment is to read the
ticket's comments. The cursor keeps, per bridged ticket, how many comments
were delivered (with a fingerprint of the last, so a changed list is noticed)
and when to look again: a ticket with activity is read every cycle, a quiet
one less and less often, up to `idle_max_cycles` apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bridges.errors import Invalid

CURSOR_VERSION = 1
PROVIDER = "zenlix"


@dataclass(slots=True)
class TrackedTicket:
    # Comments already delivered; -1 until the first check of a ticket found
    # when the cursor started (those newer than `PollState.since` are new).
    seen: int
    fingerprint: str  # of the last delivered comment, "" when none
    due: int  # cycle of the next comment check
    level: int  # quiet checks since the last activity (the gap grows with it)
    signature: str  # the state last reported (mapping.ticket_signature)
    origin: str = ""  # last idempotency key echoed, never echoed twice
    hidden: bool = False  # not in `ticket_list` any more, read with ticket_view

    def to_json(self) -> list[Any]:
        return [self.seen, self.fingerprint, self.due, self.level, self.signature,
                self.origin, int(self.hidden)]

    @classmethod
    def from_json(cls, raw: Any) -> TrackedTicket:
        if not isinstance(raw, list) or len(raw) != 7:
            raise ValueError("a tracked ticket is a list of seven")
        seen, fingerprint, due, level, signature, origin, hidden = raw
        if not all(isinstance(v, int) for v in (seen, due, level, hidden)):
            raise ValueError("counters must be integers")
        if not all(isinstance(v, str) for v in (fingerprint, signature, origin)):
            raise ValueError("texts must be strings")
        return cls(seen, fingerprint, due, level, signature, origin, bool(hidden))


@dataclass(slots=True)
class PollState:
    cycle: int
    since: str  # server-local time the cursor started at
    listed_at: float  # wall-clock time of the last ticket_list
    more: bool  # the last cycle stopped at the budget
    tickets: dict[str, TrackedTicket]

    def dumps(self) -> str:
        return json.dumps(
            {"v": CURSOR_VERSION, "n": self.cycle, "s": self.since, "l": self.listed_at,
             "m": int(self.more), "t": {h: t.to_json() for h, t in self.tickets.items()}},
            separators=(",", ":"),
        )

    @classmethod
    def loads(cls, raw: str) -> PollState:
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("v") != CURSOR_VERSION:
                raise ValueError("not a version 1 cursor")
            cycle, since, listed_at, more = data["n"], data["s"], data["l"], data["m"]
            if not isinstance(cycle, int) or not isinstance(since, str):
                raise ValueError("bad header")
            if not isinstance(listed_at, int | float) or not isinstance(more, int):
                raise ValueError("bad header")
            tickets = {str(h): TrackedTicket.from_json(t) for h, t in dict(data["t"]).items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise Invalid(f"not a Zenlix poll cursor: {exc}", provider=PROVIDER) from None
        return cls(cycle, since, float(listed_at), bool(more), tickets)


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a ticket's comments are read next: after activity every cycle,
    then with gaps of 1, 1, 2, 2, 4, 4, 8... cycles, up to `idle_max_cycles`.
    Agents mostly answer soon after the customer wrote, so a ticket stays
    quick for a few minutes and costs little once quiet. Without `adaptive`,
    every ticket is read every cycle (the baseline the bench compares against)."""

    adaptive: bool = True
    idle_max_cycles: int = 8

    @property
    def quietest(self) -> int:
        return 2 * self.idle_max_cycles.bit_length()

    def found(self, ticket_hash: str, cycle: int, signature: str) -> TrackedTicket:
        """A ticket there when the cursor starts: nothing says it is busy, so
        it is quiet, and first read at a point spread over the idle interval
        (a restart does not read every ticket in one burst)."""
        if not self.adaptive:
            return TrackedTicket(-1, "", cycle + 1, 0, signature)
        due = cycle + 1 + int(ticket_hash[:8], 16) % self.idle_max_cycles
        return TrackedTicket(-1, "", due, self.quietest, signature)

    def wake(self, ticket: TrackedTicket, cycle: int) -> None:
        """Something happened to the ticket: read it this cycle."""
        ticket.level = 0
        ticket.due = min(ticket.due, cycle)

    def after_check(self, ticket: TrackedTicket, cycle: int, *, active: bool,
                    closed: bool) -> None:
        if not self.adaptive or active:
            ticket.level = 0
            ticket.due = cycle + 1
            return
        if closed:  # done tickets rarely get comments
            ticket.level = self.quietest
            ticket.due = cycle + self.idle_max_cycles
            return
        ticket.level = min(ticket.level + 1, self.quietest)
        ticket.due = cycle + min(2 ** (ticket.level // 2), self.idle_max_cycles)
