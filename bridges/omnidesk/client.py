"""HTTP access to the Omnidesk REST API (providers/omnidesk.md).

One `httpx.AsyncClient` with HTTP Basic `staff_email:api_key`; JSON bodies,
or multipart with bracketed field names when files travel. Every answer is
judged by `TABLE`, the one place where Omnidesk's answers become
`bridges.errors`, and every response's budget headers land in `budget`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from bridges import http
from bridges.errors import Forbidden, NotFound
from bridges.http import (
    CLIENT_ERRORS,
    NOT_JSON,
    SUCCESSFUL,
    Decision,
    Rule,
    Table,
    json_or,
    retry_after,
    send,
    status,
)
from bridges.omnidesk.budget import ApiBudget
from bridges.omnidesk.config import OmnideskSettings

PROVIDER = "omnidesk"
log = logging.getLogger("deskbridge.omnidesk")

# Omnidesk's answers (providers/omnidesk.md, "Basics"; issue 13 for what
# third-party clients of the real API met). `detail` is the body's
# `{"error": "<code>"}`, or the body itself when it is plain text.
TABLE = Table(PROVIDER, (
    Rule("429", Decision.RATE_LIMITED, status(429)),
    # Older accounts answer an exhausted budget with 403 and a text, spelt
    # "rate limit exceeded", "Rate Limit Exceeded", "rate_limit_exceeded",
    # "API rate limit exceeded" or "too many requests".
    Rule("403 whose body says the rate limit was exceeded", Decision.RATE_LIMITED, status(403),
         detail=r"rate[\s_-]*limit|too[\s_-]*many[\s_-]*requests"),
    Rule("401: a wrong API key", Decision.HELD, status(401), setting="OMNIDESK_API_KEY"),
    # The API key's staff member may not touch this one case, or the staff
    # member named in the request (an assignee) is inactive: this item only.
    Rule("staff_has_not_access, access_denied or staff_not_active", Decision.INVALID,
         detail=r"^(staff_has_not_access|access_denied|staff_not_active)$", error=Forbidden),
    Rule("403 otherwise: a wrong staff e-mail", Decision.HELD, status(403),
         setting="OMNIDESK_STAFF_EMAIL"),
    Rule("any status with an error code ending in _not_found", Decision.INVALID,
         detail=r"_not_found$", error=NotFound),
    Rule("2xx whose body is not JSON", Decision.RETRY, SUCCESSFUL,
         detail=f"^{re.escape(NOT_JSON)}$"),
    Rule("2xx with an error code", Decision.INVALID, SUCCESSFUL, detail=r"."),
    Rule("other 4xx", Decision.INVALID, CLIENT_ERRORS),
), credentials="OMNIDESK_API_KEY")

# (field name, (file name, bytes, mime type)) as httpx takes multipart files.
UploadFile = tuple[str, tuple[str, bytes, str]]


@dataclass(frozen=True, slots=True)
class Answer:
    """A decoded response and the server's clock when it answered (the
    `Date` header), which the poller uses to tell settled seconds."""

    data: Any
    server_time: datetime


def answer_of(response: httpx.Response) -> http.Answer:
    """The response as the table sees it: its status and error code."""
    body = json_or(response, NOT_JSON)
    if isinstance(body, Mapping) and isinstance(body.get("error"), str):
        detail = str(body["error"]).strip()
    elif body is NOT_JSON:
        text = response.text.strip()[:200]
        detail = text if response.status_code >= 400 or not text else NOT_JSON
    elif isinstance(body, str):
        detail = body.strip()[:200]
    else:
        detail = ""
    return http.Answer(response.status_code, detail, retry_after=retry_after(response.headers))


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
        response = await send(self._http, method, uri, where=what, provider=PROVIDER, **kwargs)
        self.budget.observe(response.headers, self._clock())
        failure = TABLE.classify(answer_of(response), where=what)
        if failure is not None:
            log.debug("omnidesk %s failed: %s", what, failure)
            raise failure
        data = response.json() if response.content else None
        return Answer(data=data, server_time=_server_time(response))


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
