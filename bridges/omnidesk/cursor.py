"""The poll cursor: a watermark over case `updated_at`, and what was seen of
the cases touched recently.

Omnidesk has no change feed: the poller lists cases by `from_updated_time`
(seconds, inclusive) sorted `updated_at_asc`, then reads only those cases'
new messages (providers/omnidesk.md, "What this means for a bridge"). The
cursor makes that exact:

* `watermark`: every case updated before this second has been read. The next
  listing starts *at* it (or at an unsettled case below it), so cases sharing
  the watermark second (several per second, or a page boundary inside one
  second) are listed again; `cases` tells those already read from those that
  changed.
* `cases`: per recently read case, its `updated_at`, the last `message_id`
  seen (messages after it are new: ids are per account and grow), status,
  priority and assignee (to announce only real changes), and whether its
  second had *settled* when it was read. A case read during the second of its
  `updated_at` (server clock, `Date` header, with a second of slack) may
  change again within that same second without `updated_at` moving, so it is
  read again on the next poll instead of being trusted.
* `floor`: for a case not in `cases` (never read since the cursor began, or
  dropped to keep the cursor small), messages created at or after this
  second are new and older ones are not. Only settled cases below the
  watermark are dropped, oldest first, and the floor moves to just after the
  newest of them, which keeps that rule true (see `forget_oldest`).

Why the cursor and not `BridgeState`: the cursor is stored in the same
transaction as the import of the events it produced; per-case marks kept
elsewhere would run ahead of an import that failed and lose its messages.
It stays bounded by `MAX_TRACKED_CASES` entries (about 50 bytes each).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bridges.errors import Invalid

VERSION = 1
MAX_TRACKED_CASES = 300


@dataclass(frozen=True, slots=True)
class CaseSeen:
    updated_at: int  # epoch seconds
    last_message_id: int
    status: str
    priority: str
    staff_id: int
    settled: bool

    def to_json(self) -> list[Any]:
        return [self.updated_at, self.last_message_id, self.status, self.priority,
                self.staff_id, int(self.settled)]

    @classmethod
    def from_json(cls, raw: Any) -> CaseSeen:
        if not (isinstance(raw, list) and len(raw) == 6):
            raise ValueError("case entry")
        updated_at, last_id, status, priority, staff_id, settled = raw
        if not all(isinstance(v, int) for v in (updated_at, last_id, staff_id, settled)):
            raise ValueError("case entry numbers")
        if not (isinstance(status, str) and isinstance(priority, str)):
            raise ValueError("case entry texts")
        return cls(updated_at, last_id, status, priority, staff_id, bool(settled))


@dataclass(slots=True)
class PollCursor:
    watermark: int
    floor: int
    cases: dict[int, CaseSeen] = field(default_factory=dict)

    def encode(self) -> str:
        return json.dumps(
            {
                "v": VERSION,
                "w": self.watermark,
                "f": self.floor,
                "c": {str(case_id): seen.to_json() for case_id, seen in self.cases.items()},
            },
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, text: str) -> PollCursor:
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict) or raw.get("v") != VERSION:
                raise ValueError("version")
            watermark, floor, cases = raw["w"], raw["f"], raw["c"]
            if not (isinstance(watermark, int) and isinstance(floor, int)):
                raise ValueError("watermark")
            if not isinstance(cases, dict):
                raise ValueError("cases")
            seen = {int(case_id): CaseSeen.from_json(entry) for case_id, entry in cases.items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise Invalid(f"not an Omnidesk poll cursor: {text[:60]!r}", provider="omnidesk"
                          ) from exc
        return cls(watermark=watermark, floor=floor, cases=seen)

    def listing_start(self) -> int:
        """Where the next listing starts: the watermark, or earlier if a case
        read before it has not settled (it may change again without its
        `updated_at` moving, and must be listed again to be re-checked)."""
        unsettled = [seen.updated_at for seen in self.cases.values() if not seen.settled]
        return min([self.watermark, *unsettled])

    def forget_oldest(self, keep: int = MAX_TRACKED_CASES) -> None:
        """Drop the oldest settled entries below the watermark until at most
        `keep` remain, moving the floor past them.

        Why the floor rule still holds for a dropped case: every message it
        had up to its `updated_at` was read; a later one would have moved its
        `updated_at` and, being below the watermark, been read and recorded
        again; so its next message is created after the poll that drops it,
        which is after the entry settled, hence at or after the new floor."""
        excess = len(self.cases) - keep
        if excess <= 0:
            return
        droppable = sorted(
            (seen.updated_at, case_id)
            for case_id, seen in self.cases.items()
            if seen.settled and seen.updated_at < self.watermark
        )
        for updated_at, case_id in droppable[:excess]:
            del self.cases[case_id]
            self.floor = max(self.floor, updated_at + 1)
