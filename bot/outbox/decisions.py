"""What happens to a row whose delivery failed: one table, tested as a table.

| failure                                           | decision                       |
|---------------------------------------------------|--------------------------------|
| `Deferred` / `NotReady` / `SendLater` (budget)    | wait `delay`, no attempt spent |
| Telegram 429 (`TelegramRetryAfter`)               | wait `retry_after`, no attempt |
| provider rate limit (`RateLimited`)               | wait `retry_after` (60 s)      |
| provider refused our credentials or permissions   | hold (bot.outbox.hold): one    |
| (`CredentialsRefused`, any error with `held`)     | probe a minute, never a dead   |
|                                                   | letter, no attempt spent       |
| `Dead`, provider `NotFound` / `Invalid`           | dead letter now                |
| anything else (5xx, timeouts, network, bad        | retry with backoff; a dead     |
| request, a session the bridge renews (a plain     | letter after the last attempt  |
| `AuthFailed`), the database away)                 |                                |
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from aiogram.exceptions import TelegramRetryAfter

from bot.telegram.pacer import SendLater
from bridges.errors import Invalid, NotFound, RateLimited

MAX_BACKOFF_SECONDS = 300.0
HOLD_RETRY_SECONDS = 60.0


class Deferred(Exception):
    """Not now: try again after `delay` seconds, without counting an attempt."""

    def __init__(self, delay: float) -> None:
        super().__init__(delay)
        self.delay = delay


class NotReady(Deferred):
    """Waiting for an earlier step (e.g. the ticket must exist at the provider)."""

    def __init__(self) -> None:
        super().__init__(1.0)


class Dead(Exception):
    """Retrying cannot help: the row becomes a dead letter now."""


class Action(enum.StrEnum):
    WAIT = "wait"  # try again after `delay`; no attempt spent
    HOLD = "hold"  # nothing can succeed until a person acts; no attempt spent
    RETRY = "retry"  # try again after a backoff; one attempt spent
    BURY = "bury"  # a dead letter now


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    delay: float = 0.0

    @property
    def counts_attempt(self) -> bool:
        return self.action in (Action.RETRY, Action.BURY)


def decide(exc: BaseException, attempts: int, max_attempts: int) -> Decision:
    """`attempts`: attempts already spent before this one."""
    if isinstance(exc, Deferred):
        return Decision(Action.WAIT, exc.delay)
    if isinstance(exc, SendLater):
        return Decision(Action.WAIT, exc.delay)
    if isinstance(exc, TelegramRetryAfter):
        return Decision(Action.WAIT, float(exc.retry_after))
    if isinstance(exc, RateLimited):
        return Decision(Action.WAIT, exc.retry_after or 60.0)
    if getattr(exc, "held", False):
        return Decision(Action.HOLD, HOLD_RETRY_SECONDS)
    if isinstance(exc, Dead | NotFound | Invalid):
        return Decision(Action.BURY)
    if attempts + 1 >= max_attempts:
        return Decision(Action.BURY)
    return Decision(Action.RETRY, backoff(attempts))


def backoff(attempts: int) -> float:
    return min(MAX_BACKOFF_SECONDS, 2.0 ** attempts) * random.uniform(0.8, 1.2)
