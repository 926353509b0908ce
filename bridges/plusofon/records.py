"""What the Plusofon bridge keeps in `BridgeState` (provider "plusofon"):
`ticket:<id>` → the Telegram customer a ticket belongs to, the idempotency
key that created it, and the line naming the customer on its opening post;
`own:<post id>` → the key of a post the bridge wrote; `key:<idempotency
key>` → how far a create or answer got."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Owner:
    customer_ref: str | None = None
    create_key: str | None = None
    # The line naming the customer above the text of the ticket's opening post.
    head: str | None = None
    opening: str | None = None  # that post's id


def owner_of(value: str | None) -> Owner:
    if not value:
        return Owner()
    data = json.loads(value)
    return Owner(customer_ref=data.get("customer"), create_key=data.get("key"),
                 head=data.get("head"), opening=data.get("opening"))


def as_int(value: str) -> int:
    return int(value) if value.isdigit() else 0
