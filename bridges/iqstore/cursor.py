"""The iqstore poll cursor: per client chat, what was reported and when to
read it again; and how far the bridge's registry of conversations was read.

iqstore has no feed across clients: a chat can only be read with that
client's own session (providers/iqstore.md). The cursor therefore keeps one
entry per client chat; the bot stores it in the same transaction as the
import, so nothing is reported twice or lost across a crash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

VERSION = 1
KEPT_CONVERSATIONS = 5  # older conversations of a chat receive nothing new


@dataclass(slots=True)
class ChatMark:
    last_seen: int  # the newest message id reported (or passed over)
    next_read: int  # Unix ms: when the chat is due to be read again
    last_activity: int  # Unix ms of the newest message seen
    conversations: list[int] = field(default_factory=list)  # opening ids, oldest first

    def conversation_of(self, message_id: int) -> int | None:
        """The conversation a message belongs to: the newest opened before it."""
        found = None
        for opening in self.conversations:
            if opening <= message_id:
                found = opening
        return found

    def add_conversation(self, opening: int) -> bool:
        if opening in self.conversations:
            return False
        self.conversations = sorted([*self.conversations, opening])[-KEPT_CONVERSATIONS:]
        return True

    def to_json(self) -> list[object]:
        return [self.last_seen, self.next_read, self.last_activity, self.conversations]

    @classmethod
    def from_json(cls, value: object) -> ChatMark:
        if not isinstance(value, list) or len(value) != 4:
            raise ValueError("bad chat mark")
        last_seen, next_read, last_activity, conversations = value
        if not (all(isinstance(v, int) for v in (last_seen, next_read, last_activity))
                and isinstance(conversations, list)
                and all(isinstance(v, int) for v in conversations)):
            raise ValueError("bad chat mark")
        return cls(last_seen, next_read, last_activity, list(conversations))


@dataclass(slots=True)
class IqstoreCursor:
    # Registry rows (`BridgeState` conversations and activity) are applied up
    # to this `updated_at` (Unix ms); the next poll re-reads a margin before it.
    watermark: int = 0
    chats: dict[int, ChatMark] = field(default_factory=dict)

    def copy(self) -> IqstoreCursor:
        return IqstoreCursor(self.watermark, {
            client: ChatMark(m.last_seen, m.next_read, m.last_activity, list(m.conversations))
            for client, m in self.chats.items()})

    def dump(self) -> str:
        return json.dumps(
            {"v": VERSION, "w": self.watermark,
             "c": {str(client): mark.to_json() for client, mark in self.chats.items()}},
            separators=(",", ":"))

    @classmethod
    def parse(cls, text: str) -> IqstoreCursor:
        """Raises ValueError for anything but a cursor this module wrote."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("v") != VERSION:
            raise ValueError("not an iqstore cursor")
        watermark, chats = data.get("w"), data.get("c")
        if not isinstance(watermark, int) or not isinstance(chats, dict):
            raise ValueError("not an iqstore cursor")
        return cls(watermark, {int(client): ChatMark.from_json(mark)
                               for client, mark in chats.items()})
