"""One error hierarchy for every bridge.

Bridges map their provider's answers onto these in one table per provider
(`bridges.http.Table`, built in each provider's client); the bot decides
what to do from the class alone:

- `RateLimited`: wait `retry_after`, then send again; no attempt is spent.
- `CredentialsRefused` (*held*): the provider refused the bridge's
  credentials or permissions. Nothing more can succeed until a person fixes
  `setting`; the work must wait, never be dropped.
- `Invalid` (with `NotFound`, `Forbidden`): this one request can never
  succeed.
- everything else (`Unavailable`, and a plain `AuthFailed`: one session or
  key refused where the bridge recovers by itself, e.g. one customer's
  iqstore session): retry with backoff.

`held` on the class says which errors hold all of the provider's work: only
`CredentialsRefused` (a subclass of `AuthFailed`, so an outbox that holds
every `AuthFailed` holds it too).
"""

from __future__ import annotations

from typing import ClassVar


class BridgeError(Exception):
    """Base of every provider failure."""

    retryable: ClassVar[bool] = False
    # True for failures that hold all of the provider's work until a person acts.
    held: ClassVar[bool] = False

    def __init__(self, message: str = "", *, provider: str | None = None) -> None:
        super().__init__(message)
        self.provider = provider


class AuthFailed(BridgeError):
    """A session or key was refused where the bridge can recover by itself
    (signing in again, a linked agent's key falling back to the service
    account, one customer's session renewed): not a reason to hold the
    provider's other work."""

    retryable = True


class CredentialsRefused(AuthFailed):
    """Held: the provider refused the bridge's own credentials or
    permissions (a wrong or rotated API key, a wrong staff e-mail, a password
    changed). Retrying cannot help until the operator fixes `setting`, the
    configuration the failure points at (e.g. "OMNIDESK_API_KEY"; several
    are joined by " or "). Nothing is lost meanwhile: the outbox holds the
    work instead of spending attempts on it."""

    held = True

    def __init__(self, message: str = "", *, setting: str,
                 provider: str | None = None) -> None:
        super().__init__(message, provider=provider)
        self.setting = setting


class NotFound(BridgeError):
    """The ticket, message or person does not exist (any more)."""


class Invalid(BridgeError):
    """The provider refused the request as malformed or not allowed."""


class Forbidden(Invalid):
    """The account lacks the rights for this one action (e.g. Zenlix `no
    priviliges` on a ticket someone else holds)."""


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
