"""What the Omnidesk bridge keeps in `BridgeState` (provider "omnidesk").

Omnidesk has no idempotency keys and echoes none, so the bridge keeps its
own: `key:<idempotency key>` → the case and message a call produced (a retry
returns it instead of posting twice); `origin:<message id>`, `case:<case
id>` (the key that created it and its user) and `update:<case id>` (the key
of the bot's last change and the `updated_at` it left) → the keys the poll
hands back as `origin_key`; `user:<user id>` → the Telegram customer.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

_STATE_KEY_LIMIT = 200


def state_key(kind: str, value: object) -> str:
    """BridgeState keys are at most 255 characters: long keys are hashed."""
    key = f"{kind}:{value}"
    if len(key) <= _STATE_KEY_LIMIT:
        return key
    return f"{kind}#{hashlib.sha256(str(value).encode()).hexdigest()}"


def json_record(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
