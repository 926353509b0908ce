"""One error hierarchy for every bridge.

Bridges map their provider's failures (HTTP status, error bodies, envelope
flags) onto these in one place per client; the bot decides on retries from
the class alone.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every provider failure."""

    retryable: bool = False

    def __init__(self, message: str = "", *, provider: str | None = None) -> None:
        super().__init__(message)
        self.provider = provider


class AuthFailed(BridgeError):
    """Credentials rejected. Retrying will not help until someone fixes them,
    but the outbox keeps the work so nothing is lost once they do."""

    retryable = True


class NotFound(BridgeError):
    """The ticket, message or person does not exist (any more)."""


class Invalid(BridgeError):
    """The provider refused the request as malformed or not allowed."""


class Forbidden(Invalid):
    """The account lacks the rights for this action (e.g. Zenlix `no priviliges`)."""


class RateLimited(BridgeError):
    """Over the provider's budget; `retry_after` seconds until it refills."""

    retryable = True

    def __init__(
        self, message: str = "", *, retry_after: float | None = None, provider: str | None = None
    ) -> None:
        super().__init__(message, provider=provider)
        self.retry_after = retry_after


class Unavailable(BridgeError):
    """Down, timing out, or answering 5xx: retry with backoff."""

    retryable = True
