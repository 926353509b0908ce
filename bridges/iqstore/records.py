"""What the iqstore bridge keeps in `BridgeState` (provider "iqstore").

- `customer:<customer_ref>` → the customer's iqstore client id;
- `client:<client id>` → its session token (secret) and customer;
- `seg:<client id>:<opening id>` → a conversation: customer, subject, the
  key that opened it; `act:<client id>` → the last message the bridge sent.
  Both are the registry the poll scans for chats to read (by `updated_at`);
- `local:<LocalId>` → the idempotency key behind our LocalIds;
- `key:<idempotency key>` → how far a send got;
- `tid:<conversation>` → the iqstore ticket of a conversation, when learned.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bridges.base import RemoteTicket, TicketStatus
from bridges.iqstore.mapping import ms_time, segment_id


@dataclass(frozen=True, slots=True)
class Conversation:
    client_id: int
    opening_id: int
    customer_ref: str | None
    subject: str
    text: str
    create_key: str | None
    created_ms: int

    @property
    def remote_ticket_id(self) -> str:
        return segment_id(self.client_id, self.opening_id)

    def to_json(self) -> str:
        return json.dumps({"customer": self.customer_ref, "subject": self.subject,
                           "text": self.text, "key": self.create_key, "at": self.created_ms},
                          ensure_ascii=False)

    @classmethod
    def from_row(cls, client_id: int, opening_id: int, value: str) -> Conversation:
        data = json.loads(value)
        return cls(client_id, opening_id, data.get("customer"), data.get("subject") or "",
                   data.get("text") or "", data.get("key"), int(data.get("at") or 0))

    def ticket(self) -> RemoteTicket:
        created = ms_time(self.created_ms)
        return RemoteTicket(
            remote_ticket_id=self.remote_ticket_id,
            number=str(self.opening_id),
            subject=self.subject,
            # The chat API has no status: a conversation stays open.
            status=TicketStatus.OPEN,
            remote_customer_id=str(self.client_id),
            customer_ref=self.customer_ref,
            created_at=created,
            updated_at=created,
        )


def activity(last_message_id: int, at_ms: int) -> str:
    return json.dumps({"last": last_message_id, "at": at_ms})


def activity_of(value: str) -> tuple[int, int]:
    data = json.loads(value)
    return int(data["last"]), int(data.get("at") or 0)


def client_record(value: str | None) -> dict[str, Any]:
    return json.loads(value) if value else {}
