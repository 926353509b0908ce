"""HTTP client of the Zenlix JSON API: one `POST <base>/api.php` with a raw
JSON body per call (providers/zenlix.md).

Every outcome goes through `TABLE` (`interpret`), the one place where
Zenlix's answers become `bridges.errors`. Keys and passwords
are `SecretStr`s: they are never logged and never part of an error message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import httpx
from pydantic import SecretStr

from bridges.errors import AuthFailed, Forbidden, NotFound, Unavailable
from bridges.http import (
    CLIENT_ERRORS,
    NO_ANSWER,
    NOT_JSON,
    SERVER_ERRORS,
    SUCCESSFUL,
    Answer,
    Decision,
    Rule,
    Table,
    json_or,
    retry_after,
    send,
    status,
    transport_error,
)
from bridges.zenlix.config import ZenlixSettings
from bridges.zenlix.models import SignIn

log = logging.getLogger("deskbridge.zenlix")

PROVIDER = "zenlix"
CREDENTIALS = "ZENLIX_LOGIN or ZENLIX_PASSWORD"

# What the body said, when it said no error text (see `answer_of`).
EMPTY, SHAPE, NO_STATUS, OK = (
    "(only whitespace)", "(unexpected shape)", "(no status)", "(ok)")


class ListUnreadable(Unavailable):
    """`ticket_list` answered only whitespace: `json_encode` failed on some
    ticket's cut text (ZENLIX 2.95, issue 14). Tickets can still be read one
    at a time with `ticket_view`."""


# Zenlix's answers (providers/zenlix.md, "Behaviour of the real server").
# Errors come as HTTP 200 with `status: "error"` and an `error_description`;
# its texts are matched in lower case and by substring, because 2.x versions
# differ in the details ("system auth error", "auth error", "validate error").
TABLE = Table(PROVIDER, (
    Rule("rate limited by a proxy", Decision.RATE_LIMITED, status(429)),
    # A PHP crash: on strict MariaDB also what an emoji, an over-long comment
    # or a non-numeric unit_id cause. Nothing was stored.
    Rule("HTTP 5xx: the server failed, nothing was stored", Decision.RETRY, SERVER_ERRORS),
    Rule("HTTP 401: a proxy refused access", Decision.HELD, status(401),
         setting="ZENLIX_BASE_URL"),
    Rule("HTTP 403: a proxy refused access", Decision.HELD, status(403),
         setting="ZENLIX_BASE_URL"),
    Rule("other HTTP 4xx: not Zenlix's API; check ZENLIX_BASE_URL", Decision.RETRY,
         CLIENT_ERRORS),
    Rule("ticket_list answering only whitespace: a ticket's text cut inside a character "
         "cannot be encoded; an admin can shorten that ticket's first line", Decision.RETRY,
         SUCCESSFUL, detail=f"^{re.escape(EMPTY)}$", call="^ticket_list$",
         error=ListUnreadable),
    Rule("only whitespace: the request was not understood", Decision.INVALID, SUCCESSFUL,
         detail=f"^{re.escape(EMPTY)}$"),
    Rule("not JSON (an unknown path answers an HTML page); check ZENLIX_BASE_URL",
         Decision.RETRY, SUCCESSFUL, detail=f"^{re.escape(NOT_JSON)}$"),
    Rule("JSON of another shape", Decision.RETRY, SUCCESSFUL, detail=f"^{re.escape(SHAPE)}$"),
    Rule("status ok", Decision.SUCCESS, SUCCESSFUL, detail=f"^{re.escape(OK)}$"),
    # A failed sign-in still carries a random uniq_id: only `status` counts.
    Rule("Zenlix refused the sign-in (login or password)", Decision.HELD, SUCCESSFUL,
         call="^auth$"),
    Rule("no status and no error (ticket_view of an unknown hash): no such ticket",
         Decision.INVALID, SUCCESSFUL, detail=f"^{re.escape(NO_STATUS)}$", error=NotFound),
    # The client signs in again once before this stands (ZenlixClient.call).
    Rule("system auth error, auth error, validate error: the API key was refused",
         Decision.HELD, SUCCESSFUL, detail="auth error|validate error"),
    Rule("you have no priviliges (sic): not for this account on this ticket",
         Decision.INVALID, SUCCESSFUL, detail="no priviliges", error=Forbidden),
    Rule("error data in fields: a field names something Zenlix does not know "
         "(e.g. an unknown client)", Decision.INVALID, SUCCESSFUL,
         detail="^error data in fields$"),
    Rule("not all params, input values not alls, mode-param is not valid, or any other "
         "error text", Decision.INVALID, SUCCESSFUL),
), credentials=CREDENTIALS)


def answer_of(mode: str, response: httpx.Response) -> tuple[Answer, dict[str, Any] | None]:
    """The answer as the table sees it, and its object when it has one.
    Answers are wrapped in a one-element array, except `auth`'s bare object;
    both forms are accepted everywhere."""
    status_code, body = response.status_code, response.text
    data: Any = None
    if not body.strip():
        # The server answers only whitespace to a body that is not JSON or
        # has no `mode` (and when json_encode fails).
        detail = EMPTY
    elif (decoded := json_or(response, NOT_JSON)) is NOT_JSON:
        detail = NOT_JSON
    else:
        data = decoded[0] if isinstance(decoded, list) and decoded else decoded
        if not isinstance(data, dict):
            detail, data = SHAPE, None
        elif data.get("status") == "ok":
            detail = OK
        elif data.get("status") is None and data.get("error_description") is None:
            detail = NO_STATUS
        else:
            detail = str(data.get("error_description") or "error").strip()
    return Answer(status_code, detail, retry_after=retry_after(response.headers),
                  call=mode), data


def interpret(mode: str, outcome: httpx.Response | httpx.HTTPError) -> dict[str, Any]:
    """The answer's object, or the `BridgeError` Zenlix's answer means
    (`TABLE`)."""
    where = f"Zenlix {mode}"
    if isinstance(outcome, httpx.HTTPError):
        TABLE.raise_for(Answer(NO_ANSWER, call=mode), where=where)
        raise transport_error(outcome, where=where, provider=PROVIDER)
    answer, data = answer_of(mode, outcome)
    TABLE.raise_for(answer, where=where)
    assert data is not None  # a success is an object with status "ok"
    return data


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
        response = await send(self._http, "POST", self._settings.api_url, content=body,
                              where=f"Zenlix {mode}", provider=PROVIDER)
        return interpret(mode, response)
