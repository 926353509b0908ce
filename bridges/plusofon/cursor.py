"""The Plusofon poll cursor: what the bridge last saw of every ticket.

Plusofon has no change feed: the open list is read whole, and a ticket is
read (`GET api/v1/ticket/{id}`) only when its list entry changed. The cursor
keeps, per ticket, the list fields that reveal a change and the last post id
already reported. It is stored by the bot in the same transaction as the
import, so nothing is reported twice or lost across a crash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from bridges.plusofon.models import TicketSummary

VERSION = 1
# Closed tickets are remembered (so that a reopened one does not replay its
# history) until they have been quiet this long.
CLOSED_RETENTION_SECONDS = 90 * 24 * 3600


@dataclass(slots=True)
class TicketMark:
    activity: int  # `lastactivity`, Unix seconds
    replies: int
    status_id: str
    unread: bool | None  # only when the list carries `unread_messages`
    last_post: str  # the last post id reported; "" when not known yet

    @classmethod
    def of(cls, summary: TicketSummary, last_post: str) -> TicketMark:
        return cls(summary.lastactivity, summary.replies, summary.statusid,
                   summary.unread_messages, last_post)

    def matches(self, summary: TicketSummary) -> bool:
        return (self.activity, self.replies, self.status_id, self.unread) == (
            summary.lastactivity, summary.replies, summary.statusid, summary.unread_messages)

    def same_posts(self, summary: TicketSummary) -> bool:
        """Nothing was written since (the status may have changed)."""
        return (self.activity, self.replies) == (summary.lastactivity, summary.replies)

    def to_json(self) -> list[object]:
        return [self.activity, self.replies, self.status_id, self.unread, self.last_post]

    @classmethod
    def from_json(cls, value: object) -> TicketMark:
        if not isinstance(value, list) or len(value) != 5:
            raise ValueError("bad ticket mark")
        activity, replies, status_id, unread, last_post = value
        if not (isinstance(activity, int) and isinstance(replies, int)
                and isinstance(status_id, str) and isinstance(last_post, str)
                and (unread is None or isinstance(unread, bool))):
            raise ValueError("bad ticket mark")
        return cls(activity, replies, status_id, unread, last_post)


@dataclass(slots=True)
class PlusofonCursor:
    open: dict[str, TicketMark] = field(default_factory=dict)
    closed: dict[str, TicketMark] = field(default_factory=dict)

    def dump(self, now: float) -> str:
        horizon = now - CLOSED_RETENTION_SECONDS
        closed = {key: mark for key, mark in self.closed.items() if mark.activity >= horizon}
        return json.dumps(
            {"v": VERSION,
             "open": {key: mark.to_json() for key, mark in self.open.items()},
             "closed": {key: mark.to_json() for key, mark in closed.items()}},
            separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def parse(cls, text: str) -> PlusofonCursor:
        """Raises ValueError for anything but a cursor this module wrote."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("v") != VERSION:
            raise ValueError("not a plusofon cursor")
        parts = []
        for name in ("open", "closed"):
            marks = data.get(name)
            if not isinstance(marks, dict):
                raise ValueError("not a plusofon cursor")
            parts.append({str(key): TicketMark.from_json(value) for key, value in marks.items()})
        return cls(open=parts[0], closed=parts[1])
