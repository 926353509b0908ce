"""HTTP client of Plusofon's support-ticket API (providers/plusofon.md).

`plusofon_error` is the one place where Plusofon's answers become
`bridges.errors`. The client signs in with the account's e-mail and password
when it has them, and signs in again once when a token is refused (401).
Secrets never reach a log line or an exception message.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from typing import Any

import httpx
from pydantic import ValidationError

from bridges.errors import (
    AuthFailed,
    BridgeError,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    Unavailable,
)
from bridges.plusofon.config import PlusofonSettings
from bridges.plusofon.models import TicketFull, TicketSummary, parse_ticket_list

PROVIDER = "plusofon"
log = logging.getLogger("deskbridge.bridges.plusofon")

# A body that was not JSON at all.
NOT_JSON: Any = object()
# "Ticket not Found" arrives as a raw upstream HTTP dump inside `message`,
# with code 500 (providers/plusofon.md, "Errors"): recognise it by the text.
_NOT_FOUND = re.compile(r"not\s+found|не\s+найден", re.IGNORECASE)
# 500 "is also used for 'no access'" (providers/plusofon.md).
_NO_ACCESS = re.compile(r"access denied|no access|forbidden|доступ", re.IGNORECASE)
_MESSAGE_LIMIT = 300


def plusofon_error(
    status: int,
    body: Any,
    *,
    retry_after: float | None = None,
    expect_success: bool = False,
    where: str = "",
) -> BridgeError | None:
    """The error an answer stands for, or None when it is a success.

    Errors carry `{"message", "code"}`; the code in the body wins over a 2xx
    status. `expect_success` is for the attachment method, which answers
    `{"success": ...}` or `{"message": ...}`.
    """
    message = _message_of(body)
    code = body.get("code") if isinstance(body, dict) else None
    failing = status if status >= 300 else code if isinstance(code, int) and code >= 400 else None
    prefix = f"{where}: " if where else ""
    if failing is None:
        if body is NOT_JSON:
            return Unavailable(f"{prefix}answered HTTP {status} without JSON", provider=PROVIDER)
        if expect_success and not (isinstance(body, dict) and body.get("success")):
            # `{"message": ...}` without `success` is a refusal, even with a 200.
            kind = NotFound if _NOT_FOUND.search(message) else Invalid
            return kind(f"{prefix}refused: {message or 'no success flag'}", provider=PROVIDER)
        return None
    text = f"{prefix}{failing} {message}".rstrip()
    if _NOT_FOUND.search(message):
        return NotFound(text, provider=PROVIDER)
    if failing == 401:
        return AuthFailed(text, provider=PROVIDER)
    if failing == 403:
        return Forbidden(text, provider=PROVIDER)
    if failing == 404:
        return NotFound(text, provider=PROVIDER)
    if failing == 429:
        return RateLimited(text, retry_after=retry_after, provider=PROVIDER)
    if 400 <= failing < 500:
        return Invalid(text, provider=PROVIDER)
    if failing >= 500 and _NO_ACCESS.search(message):
        return Forbidden(text, provider=PROVIDER)
    return Unavailable(text, provider=PROVIDER)


def _message_of(body: Any) -> str:
    if not isinstance(body, dict) or "message" not in body:
        return ""
    # The not-found dump carries headers and CRLFs: keep it on one short line.
    text = " ".join(str(body["message"]).split())
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class PlusofonClient:
    def __init__(
        self, settings: PlusofonSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._settings = settings
        self._http = httpx.AsyncClient(
            base_url=settings.base_url + "/",
            transport=transport,
            timeout=settings.timeout_seconds,
            headers={
                "Accept": "application/json",
                "Content-Type": "application/json",
                "Client": settings.client,
            },
        )
        self._token = settings.token.get_secret_value() if settings.token else None
        self._signing_in = asyncio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- methods of the API ---------------------------------------------------

    async def list_tickets(self, *, open_tickets: bool) -> list[TicketSummary]:
        state = "true" if open_tickets else "false"
        # The page sends `state` as a JSON body on a GET; some proxies drop
        # such bodies, so it goes in the query string as well.
        body = await self._call(
            "GET", "api/v1/ticket", json={"state": state}, params={"state": state}
        )
        return self._parse(parse_ticket_list, body, "api/v1/ticket")

    async def get_ticket(self, ticket_id: str) -> TicketFull:
        path = f"api/v1/ticket/{ticket_id}"
        return self._parse(TicketFull.model_validate, await self._call("GET", path), path)

    async def create_ticket(self, subject: str, description: str) -> TicketFull:
        # The inline `file` field is left out: the page does not say how its
        # content is encoded. Files go through `attach` (base64) instead.
        body = await self._call(
            "POST", "api/v1/ticket", json={"subject": subject, "description": description}
        )
        return self._parse(TicketFull.model_validate, body, "api/v1/ticket")

    async def answer(self, ticket_id: str, text: str) -> TicketFull:
        path = f"api/v1/ticket/answer/{ticket_id}"
        body = await self._call("PUT", path, json={"text": text})
        return self._parse(TicketFull.model_validate, body, path)

    async def attach(self, ticket_id: str, post_id: str, file_name: str, data: bytes) -> None:
        await self._call(
            "POST",
            "api/v1/ticket/attachment",
            json={
                "ticketId": int(ticket_id),
                "ticketPostID": int(post_id),
                "filename": file_name,
                "contents": base64.b64encode(data).decode("ascii"),
            },
            expect_success=True,
        )

    async def sign_in(self) -> None:
        """Get a fresh token now (used by `check`)."""
        async with self._signing_in:
            self._token = await self._login()

    # -- transport --------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        expect_success: bool = False,
    ) -> Any:
        where = f"{method} {path}"
        renewed = False
        while True:
            token = await self._current_token()
            response = await self._send(method, path, where, json=json, params=params,
                                        headers={"Authorization": f"Bearer {token}"})
            body = self._body(response)
            error = plusofon_error(response.status_code, body, retry_after=_retry_after(response),
                                   expect_success=expect_success, where=where)
            if error is None:
                return body
            if isinstance(error, AuthFailed) and self._settings.can_sign_in and not renewed:
                # Tokens expire: sign in again once, then repeat the call.
                log.info("plusofon refused the token; signing in again")
                await self._renew(token)
                renewed = True
                continue
            raise error

    async def _send(self, method: str, path: str, where: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise Unavailable(f"{where}: timed out", provider=PROVIDER) from None
        except httpx.HTTPError as exc:
            raise Unavailable(f"{where}: {type(exc).__name__}", provider=PROVIDER) from None

    def _body(self, response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            return NOT_JSON
        return self._scrubbed(body)

    def _scrubbed(self, body: Any) -> Any:
        """Blank our secrets out of a provider's message before it can reach
        an exception (and from there the logs and the dead-letter list)."""
        if not isinstance(body, dict) or not isinstance(body.get("message"), str):
            return body
        message = body["message"]
        for secret in self._secrets():
            message = message.replace(secret, "***")
        return {**body, "message": message}

    def _secrets(self) -> list[str]:
        values = [self._token]
        for secret in (self._settings.token, self._settings.password):
            values.append(secret.get_secret_value() if secret else None)
        return [value for value in values if value]

    async def _current_token(self) -> str:
        if self._token is None:
            async with self._signing_in:
                if self._token is None:
                    self._token = await self._login()
        return self._token

    async def _renew(self, refused: str) -> None:
        async with self._signing_in:
            if self._token == refused:  # nobody renewed it meanwhile
                self._token = await self._login()

    async def _login(self) -> str:
        settings = self._settings
        if not (settings.email and settings.password):
            raise AuthFailed("no PLUSOFON_EMAIL/PLUSOFON_PASSWORD to sign in with",
                             provider=PROVIDER)
        where = "POST api/v1/login"
        response = await self._send(
            "POST", "api/v1/login", where,
            json={"email": settings.email, "password": settings.password.get_secret_value()})
        body = self._body(response)
        error = plusofon_error(response.status_code, body, retry_after=_retry_after(response),
                               where=where)
        if error is not None:
            raise error
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthFailed(f"{where}: the answer carries no token", provider=PROVIDER)
        return token

    @staticmethod
    def _parse(parse: Any, body: Any, path: str) -> Any:
        try:
            return parse(body)
        except (ValidationError, ValueError) as exc:
            # A shape we do not understand: most likely a proxy or an outage page.
            count = len(exc.errors()) if isinstance(exc, ValidationError) else 1
            raise Unavailable(f"{path}: unexpected answer ({count} problem(s))",
                              provider=PROVIDER) from None
