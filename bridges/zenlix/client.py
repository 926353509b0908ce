"""HTTP client of the Zenlix JSON API: one `POST <base>/api.php` with a raw
JSON body per call (providers/zenlix.md).

Every outcome, a transport failure included, goes through `interpret`, the
one place where Zenlix's answers become `bridges.errors`. Keys and passwords
are `SecretStr`s: they are never logged and never part of an error message.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
from pydantic import SecretStr

from bridges.errors import (
    AuthFailed,
    BridgeError,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    Unavailable,
)
from bridges.zenlix.config import ZenlixSettings
from bridges.zenlix.models import SignIn

log = logging.getLogger("deskbridge.zenlix")

PROVIDER = "zenlix"

# Error texts of ZENLIX 2.x (providers/zenlix.md, "Error strings"); matched in
# lower case and by substring, because 2.x versions differ in the details
# ("system auth error", "auth error", "validate error").
_AUTH_MARKERS = ("auth error", "validate error")
_PRIVILEGE_MARKER = "no priviliges"  # sic: the server's spelling
_MALFORMED = ("not all params", "input values not alls", "mode-param is not valid")
_BAD_DATA = "error data in fields"


class ListUnreadable(Unavailable):
    """`ticket_list` answered only whitespace: `json_encode` failed on some
    ticket's cut text (ZENLIX 2.95, issue 14). Tickets can still be read one
    at a time with `ticket_view`."""


def interpret(mode: str, outcome: httpx.Response | httpx.HTTPError) -> dict[str, Any]:
    """The answer's object, or the `BridgeError` Zenlix's answer means.

    Answers are wrapped in a one-element array, except `auth`'s bare object;
    both forms are accepted everywhere.
    """
    if isinstance(outcome, httpx.TimeoutException):
        raise Unavailable(f"Zenlix {mode}: no answer in time", provider=PROVIDER)
    if isinstance(outcome, httpx.HTTPError):
        raise Unavailable(f"Zenlix {mode}: {type(outcome).__name__}", provider=PROVIDER)
    status, body = outcome.status_code, outcome.text
    if status == 429:
        raise RateLimited(f"Zenlix {mode}: HTTP 429", retry_after=_retry_after(outcome),
                          provider=PROVIDER)
    if status >= 500:
        # A PHP crash: on strict MariaDB also what an emoji, an over-long
        # comment or a non-numeric unit_id cause. Nothing was stored.
        detail = "an empty body" if not body.strip() else "an error page"
        raise Unavailable(f"Zenlix {mode}: HTTP {status} with {detail}", provider=PROVIDER)
    if status in (401, 403):
        raise AuthFailed(f"Zenlix {mode}: HTTP {status} (a proxy refused access)",
                         provider=PROVIDER)
    if status >= 400:
        raise Unavailable(f"Zenlix {mode}: HTTP {status}; check ZENLIX_BASE_URL",
                          provider=PROVIDER)
    if not body.strip():
        if mode == "ticket_list":
            # json_encode failed on a ticket's text, cut inside a character
            # (text.py): the request was fine, the list cannot be sent.
            raise ListUnreadable(
                f"Zenlix {mode}: an empty answer (a ticket's text cut at 150 bytes inside "
                f"a character cannot be encoded; an admin can shorten that ticket's first "
                f"line)", provider=PROVIDER)
        # The server answers only whitespace to a body that is not JSON or has
        # no `mode`: the request itself was wrong.
        raise Invalid(f"Zenlix {mode}: an empty answer (the request was not understood)",
                      provider=PROVIDER)
    try:
        data = json.loads(body)
    except ValueError:
        # An unknown path answers 200 with an HTML 404 page.
        raise Unavailable(f"Zenlix {mode}: not a Zenlix API answer; check ZENLIX_BASE_URL",
                          provider=PROVIDER) from None
    if isinstance(data, list):
        data = data[0] if data else None
    if not isinstance(data, dict):
        raise Unavailable(f"Zenlix {mode}: an answer of an unexpected shape", provider=PROVIDER)
    state, description = data.get("status"), data.get("error_description")
    if state == "ok":
        return data
    if mode == "auth":
        # A failed sign-in still carries a random uniq_id: only `status` counts.
        raise AuthFailed("Zenlix refused the sign-in (login or password)", provider=PROVIDER)
    if state is None and description is None:
        # What `ticket_view` answers for an unknown hash.
        raise NotFound(f"Zenlix {mode}: no such ticket", provider=PROVIDER)
    raise _error_for(mode, str(description or "").strip())


def _error_for(mode: str, description: str) -> BridgeError:
    folded = description.lower()
    if any(marker in folded for marker in _AUTH_MARKERS):
        return AuthFailed(f"Zenlix {mode}: the API key was refused ({description})",
                          provider=PROVIDER)
    if _PRIVILEGE_MARKER in folded:
        return Forbidden(f"Zenlix {mode}: the account has no privileges for this action",
                         provider=PROVIDER)
    if folded == _BAD_DATA:
        return Invalid(f"Zenlix {mode}: a field names something Zenlix does not know "
                       f"(e.g. an unknown client)", provider=PROVIDER)
    if folded in _MALFORMED:
        return Invalid(f"Zenlix {mode}: {description}", provider=PROVIDER)
    return Invalid(f"Zenlix {mode}: {description or 'error'}", provider=PROVIDER)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("retry-after", ""))
    except ValueError:
        return None


class ZenlixClient:
    """Calls the API as the service account (signing in lazily, and once more
    when its key is refused) or with an explicit key (a linked agent's)."""

    def __init__(
        self, settings: ZenlixSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._settings = settings
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.timeout_seconds), transport=transport,
            headers={"content-type": "application/json"},
        )
        self._service_key: SecretStr | None = None
        self._sign_in_lock = asyncio.Lock()
        self.service_name: str | None = None
        # HTTP requests made so far: the poller budgets by this.
        self.requests = 0

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(
        self, mode: str, fields: dict[str, Any] | None = None, *, key: SecretStr | None = None
    ) -> dict[str, Any]:
        """One API call. Without `key` it runs as the service account and, if
        Zenlix refuses the key, signs in again once and retries."""
        if key is not None:
            return await self._send(mode, fields or {}, key)
        service_key = await self._service()
        try:
            return await self._send(mode, fields or {}, service_key)
        except AuthFailed:
            log.info("Zenlix refused the service key; signing in again")
            return await self._send(mode, fields or {}, await self._service(stale=service_key))

    async def service_account_name(self) -> str:
        """The service account's name (`fio`), signing in if need be."""
        await self._service()
        return self.service_name or self._settings.login

    async def sign_in(self, login: str, password: SecretStr) -> SignIn:
        """`auth`, judged by `status` (a refusal carries a random uniq_id too).
        No `device_token`: any value registers a push device on the server."""
        answer = await self._post("auth", {"login": login, "pass": password.get_secret_value()})
        signed = SignIn.model_validate(answer)
        if not signed.uniq_id:
            raise AuthFailed("Zenlix signed in without an API key", provider=PROVIDER)
        return signed

    async def _service(self, stale: SecretStr | None = None) -> SecretStr:
        async with self._sign_in_lock:
            # Another call may have signed in again while this one waited.
            if self._service_key is not None and self._service_key != stale:
                return self._service_key
            signed = await self.sign_in(self._settings.login, self._settings.password)
            self._service_key = SecretStr(signed.uniq_id)
            self.service_name = signed.fio or self._settings.login
            return self._service_key

    async def _send(self, mode: str, fields: dict[str, Any], key: SecretStr) -> dict[str, Any]:
        return await self._post(mode, {**fields, "uniq_id": key.get_secret_value()})

    async def _post(self, mode: str, fields: dict[str, Any]) -> dict[str, Any]:
        # Raw UTF-8 JSON: escaping would not help strict MariaDB anyway, and
        # the text is made storable before it gets here (see text.py).
        body = json.dumps({"mode": mode, **fields}, ensure_ascii=False).encode()
        self.requests += 1
        try:
            response = await self._http.post(self._settings.api_url, content=body)
        except httpx.HTTPError as exc:
            return interpret(mode, exc)
        return interpret(mode, response)
