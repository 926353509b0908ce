"""What a provider's answer means, in one table per provider.

Every bridge turns an answer into an `Answer` (the HTTP status and what the
body says: its error code or text) and looks it up in its `Table`: the
provider's own rows first, then `HTTP_RULES`, the one status table every
bridge shares. A row gives one of five decisions (`Decision`), and the
error class the bot acts on. `retry_after` is the one parser of a
`Retry-After` header, and `send` the one place where transport failures
become `Unavailable`.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from bridges.errors import (
    BridgeError,
    CredentialsRefused,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    Unavailable,
)

# A transport failure (timeout, refused connection) has no status.
NO_ANSWER = 0
# The detail of a body that is not JSON where JSON was due.
NOT_JSON = "(not JSON)"
# Where a detail is too long to show (a provider's raw HTML dump...).
DETAIL_LIMIT = 300


class Decision(enum.StrEnum):
    SUCCESS = "success"
    RETRY = "retry with backoff"
    RATE_LIMITED = "rate limited (wait retry_after)"
    HELD = "held (until a person fixes a setting)"
    INVALID = "invalid (this item can never succeed)"


def decision_of(error: BridgeError | None) -> Decision:
    """The decision an error (None: success) stands for."""
    if error is None:
        return Decision.SUCCESS
    if isinstance(error, RateLimited):
        return Decision.RATE_LIMITED
    if error.held:
        return Decision.HELD
    if isinstance(error, Invalid | NotFound):
        return Decision.INVALID
    return Decision.RETRY


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer as the tables see it. `detail` is what the provider's body
    says, normalised by its client (an error code, an error text, or a
    marker such as "(not JSON)"); "" when it says nothing. `call` names the
    request where the meaning depends on it (a sign-in, another API)."""

    status: int
    detail: str = ""
    retry_after: float | None = None
    call: str = ""


_ERROR_OF: dict[Decision, type[BridgeError]] = {
    Decision.RETRY: Unavailable,
    Decision.RATE_LIMITED: RateLimited,
    Decision.HELD: CredentialsRefused,
    Decision.INVALID: Invalid,
}


@dataclass(frozen=True, slots=True)
class Rule:
    """One row: answers with a status in `status` (None: any) whose detail
    matches `detail` (a regular expression searched case-insensitively;
    None: any) mean `decision`. `error` narrows the class raised (NotFound,
    Forbidden, a provider's own); `setting` is what a held answer points the
    operator at (default: the table's credentials setting)."""

    when: str  # the row in words, for the README, the test ids and the error text
    decision: Decision
    status: range | None = None
    detail: str | None = None
    error: type[BridgeError] | None = None
    setting: str | None = None
    call: str | None = None  # a regular expression the answer's call must match

    def matches(self, answer: Answer) -> bool:
        if self.status is not None and answer.status not in self.status:
            return False
        if self.call is not None and re.search(self.call, answer.call) is None:
            return False
        return self.detail is None or re.search(self.detail, answer.detail,
                                                re.IGNORECASE) is not None


def status(code: int) -> range:
    return range(code, code + 1)


SUCCESSFUL = range(200, 300)
CLIENT_ERRORS = range(400, 500)
SERVER_ERRORS = range(500, 600)

# The one status table: what an HTTP status means when nothing the provider
# says overrides it.
HTTP_RULES: tuple[Rule, ...] = (
    Rule("no answer (timeout, connection refused)", Decision.RETRY, status(NO_ANSWER)),
    Rule("2xx", Decision.SUCCESS, SUCCESSFUL),
    Rule("401", Decision.HELD, status(401)),
    Rule("403", Decision.INVALID, status(403), error=Forbidden),
    Rule("404", Decision.INVALID, status(404), error=NotFound),
    Rule("408", Decision.RETRY, status(408)),
    Rule("429", Decision.RATE_LIMITED, status(429)),
    Rule("other 4xx", Decision.INVALID, CLIENT_ERRORS),
    Rule("5xx", Decision.RETRY, SERVER_ERRORS),
    Rule("anything else (1xx, 3xx)", Decision.RETRY),
)


class Table:
    """A provider's rows, then `HTTP_RULES`. `credentials` is the setting a
    held row points at unless it names its own."""

    def __init__(self, provider: str, rules: Sequence[Rule], *, credentials: str) -> None:
        self.provider = provider
        self.rules = tuple(rules)
        self.credentials = credentials

    def rule_for(self, answer: Answer) -> Rule:
        return next(rule for rule in (*self.rules, *HTTP_RULES) if rule.matches(answer))

    def classify(self, answer: Answer, *, where: str = "") -> BridgeError | None:
        """The error the answer means (None for a success), its message
        naming the call and what the provider said (never a credential:
        clients scrub details first)."""
        rule = self.rule_for(answer)
        if rule.decision is Decision.SUCCESS:
            return None
        said = f"HTTP {answer.status}" if answer.status != NO_ANSWER else "no answer"
        if answer.detail:
            said += f": {_clipped(answer.detail)}"
        text = f"{where + ': ' if where else ''}{rule.when} ({said})"
        error = rule.error or _ERROR_OF[rule.decision]
        if rule.decision is Decision.HELD:
            setting = rule.setting or self.credentials
            return CredentialsRefused(f"{text}; check {setting}", setting=setting,
                                      provider=self.provider)
        if rule.decision is Decision.RATE_LIMITED:
            return RateLimited(text, retry_after=answer.retry_after, provider=self.provider)
        return error(text, provider=self.provider)

    def raise_for(self, answer: Answer, *, where: str = "") -> None:
        error = self.classify(answer, where=where)
        if error is not None:
            raise error

    def describe(self, *, shared: bool = False) -> list[tuple[str, str]]:
        """(answer, decision) rows for the README: the provider's own, or
        (`shared`) the HTTP_RULES it falls back to."""
        rows = []
        for rule in HTTP_RULES if shared else self.rules:
            decision = rule.decision.value
            if rule.decision is Decision.HELD:
                decision = f"held: check {rule.setting or self.credentials}"
            rows.append((rule.when, decision))
        return rows


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `Retry-After` (or Omnidesk's `retry_after`): a
    number of seconds or an HTTP date; None when absent or unreadable."""
    for name in ("Retry-After", "retry_after"):
        value = (headers.get(name) or "").strip()
        if not value:
            continue
        try:
            seconds = float(value)
        except ValueError:
            pass
        else:
            return max(0.0, seconds) if math.isfinite(seconds) else None
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return max(0.0, (moment - datetime.now(UTC)).total_seconds())
    return None


async def send(http: httpx.AsyncClient, method: str, url: str, *, where: str, provider: str,
               **kwargs: Any) -> httpx.Response:
    """One request; a transport failure becomes `Unavailable` (the "no
    answer" row of every table), never an httpx exception."""
    try:
        return await http.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise transport_error(exc, where=where, provider=provider) from None


def transport_error(exc: httpx.HTTPError, *, where: str, provider: str) -> Unavailable:
    if isinstance(exc, httpx.TimeoutException):
        return Unavailable(f"{where}: no answer in time", provider=provider)
    return Unavailable(f"{where}: unreachable ({type(exc).__name__})", provider=provider)


def json_or(response: httpx.Response, default: Any) -> Any:
    """The body as JSON, or `default` when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return default


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every secret blanked out, before it can reach an error
    (and from there the logs and the dead-letter list)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _clipped(detail: str) -> str:
    detail = " ".join(detail.split())
    return detail if len(detail) <= DETAIL_LIMIT else detail[: DETAIL_LIMIT - 1] + "…"
