"""HTTP access to the Omnidesk REST API (providers/omnidesk.md).

One `httpx.AsyncClient` with HTTP Basic `staff_email:api_key`; JSON bodies,
or multipart with bracketed field names when files travel. Every failure,
whatever its form, becomes a `bridges.errors` exception in `provider_error`,
and every response's budget headers land in `budget`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from bridges.errors import (
    AuthFailed,
    BridgeError,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    Unavailable,
)
from bridges.omnidesk.budget import ApiBudget, retry_after_of
from bridges.omnidesk.config import OmnideskSettings

PROVIDER = "omnidesk"
log = logging.getLogger("deskbridge.omnidesk")

# Older accounts answer an exhausted budget with 403 and this body; newer
# ones with 429 (providers/omnidesk.md, "Rate limit").
RATE_LIMIT_TEXT = "rate limit exceeded"
# Error codes that say the API key's staff member may not do this.
FORBIDDEN_CODES = frozenset({"staff_has_not_access", "staff_not_active", "access_denied"})

# (field name, (file name, bytes, mime type)) as httpx takes multipart files.
UploadFile = tuple[str, tuple[str, bytes, str]]


@dataclass(frozen=True, slots=True)
class Answer:
    """A decoded response and the server's clock when it answered (the
    `Date` header), which the poller uses to tell settled seconds."""

    data: Any
    server_time: datetime


def provider_error(outcome: httpx.Response | Exception, *, what: str = "") -> BridgeError | None:
    """The one place where Omnidesk failures become bridge errors: transport
    failures, HTTP statuses and `{"error": "<code>"}` bodies. None for a
    success. Messages name the call and the code, never a credential."""
    where = f"{what}: " if what else ""
    if isinstance(outcome, httpx.TimeoutException):
        return Unavailable(f"{where}timed out", provider=PROVIDER)
    if isinstance(outcome, Exception):
        return Unavailable(f"{where}unreachable ({type(outcome).__name__})", provider=PROVIDER)
    status = outcome.status_code
    code = error_code(outcome)
    if status == 429 or (status == 403 and RATE_LIMIT_TEXT in code.lower()):
        return RateLimited(
            f"{where}rate limit exceeded",
            retry_after=retry_after_of(outcome.headers),
            provider=PROVIDER,
        )
    described = f"{where}HTTP {status}{f' {code}' if code else ''}"
    if status == 401:
        return AuthFailed(f"{described} (check OMNIDESK_STAFF_EMAIL and OMNIDESK_API_KEY)",
                          provider=PROVIDER)
    if status >= 500:
        return Unavailable(described, provider=PROVIDER)
    if status < 400 and not code:
        return None
    if status == 404 or code.endswith("_not_found"):
        return NotFound(described, provider=PROVIDER)
    if status == 403 or code in FORBIDDEN_CODES:
        return Forbidden(described, provider=PROVIDER)
    return Invalid(described, provider=PROVIDER)


def error_code(response: httpx.Response) -> str:
    """`{"error": "case_not_found"}` → "case_not_found"; a plain-text body as
    is (the old rate-limit answer); "" for a success body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] if response.status_code >= 400 else ""
    if isinstance(body, Mapping) and isinstance(body.get("error"), str):
        return str(body["error"]).strip()
    if isinstance(body, str):
        return body.strip()[:200]
    return ""


class OmnideskClient:
    def __init__(
        self,
        settings: OmnideskSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._http = httpx.AsyncClient(
            base_url=settings.api_base,
            auth=httpx.BasicAuth(settings.staff_email, settings.api_key.get_secret_value()),
            timeout=httpx.Timeout(settings.timeout_seconds, connect=10.0),
            transport=transport,
            headers={"Accept": "application/json"},
        )
        self.budget = ApiBudget()
        # Requests sent, for pacing the poller by what a cycle really spent.
        self.request_count = 0

    async def get(self, uri: str, params: Mapping[str, str | int] | None = None) -> Answer:
        return await self._send("GET", uri, params=params)

    async def post(self, uri: str, body: Mapping[str, Any]) -> Answer:
        return await self._send("POST", uri, json=body)

    async def put(self, uri: str, body: Mapping[str, Any]) -> Answer:
        return await self._send("PUT", uri, json=body)

    async def post_multipart(
        self, uri: str, fields: Mapping[str, str], files: Sequence[UploadFile]
    ) -> Answer:
        """Multipart with bracketed names (`message[content]`,
        `message[attachments][0]`): how Omnidesk takes files."""
        return await self._send("POST", uri, data=dict(fields), files=list(files))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, method: str, uri: str, **kwargs: Any) -> Answer:
        what = f"{method} {uri}"
        self.request_count += 1
        try:
            response = await self._http.request(method, uri, **kwargs)
        except httpx.HTTPError as exc:
            raise _raised(provider_error(exc, what=what)) from exc
        self.budget.observe(response.headers, self._clock())
        failure = provider_error(response, what=what)
        if failure is not None:
            log.debug("omnidesk %s failed: %s", what, failure)
            raise failure
        try:
            data = response.json() if response.content else None
        except ValueError as exc:
            raise Unavailable(f"{what}: the answer is not JSON", provider=PROVIDER) from exc
        return Answer(data=data, server_time=_server_time(response))


def _raised(error: BridgeError | None) -> BridgeError:
    return error or Unavailable("request failed", provider=PROVIDER)


def _server_time(response: httpx.Response) -> datetime:
    header = response.headers.get("date")
    if header:
        try:
            parsed = parsedate_to_datetime(header)
        except (TypeError, ValueError):
            parsed = None
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC)
