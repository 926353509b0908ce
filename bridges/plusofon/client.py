"""HTTP client of Plusofon's support-ticket API (providers/plusofon.md).

`TABLE` is the one place where Plusofon's answers become `bridges.errors`.
The client signs in with the account's e-mail and password when it has
them, and signs in again once when a token is refused (401).
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

from bridges.errors import AuthFailed, CredentialsRefused, Forbidden, NotFound, Unavailable
from bridges.http import (
    CLIENT_ERRORS,
    NOT_JSON,
    SERVER_ERRORS,
    SUCCESSFUL,
    Answer,
    Decision,
    Rule,
    Table,
    json_or,
    retry_after,
    scrub,
    send,
    status,
)
from bridges.plusofon.config import PlusofonSettings
from bridges.plusofon.models import TicketFull, TicketSummary, parse_ticket_list

PROVIDER = "plusofon"
log = logging.getLogger("deskbridge.bridges.plusofon")

LOGIN, ATTACH = "POST api/v1/login", "POST api/v1/ticket/attachment"
SUCCESS_FLAG = "(success)"
NOT_FOUND = r"not\s+found|не\s+найден"
ERRORS = range(300, 600)

# Plusofon's answers (providers/plusofon.md): errors carry `{"message",
# "code"}`, and the code in the body wins over a 2xx status.
TABLE = Table(PROVIDER, (
    Rule("the sign-in refused (4xx to api/v1/login)", Decision.HELD, CLIENT_ERRORS,
         call=f"^{LOGIN}$", setting="PLUSOFON_EMAIL or PLUSOFON_PASSWORD"),
    # "Ticket not Found" arrives as a raw upstream HTTP dump inside `message`,
    # with code 500 ("Errors"): recognised by the text.
    Rule("an error whose message says not found (the 500 dump too)", Decision.INVALID,
         ERRORS, detail=NOT_FOUND, error=NotFound),
    Rule("2xx whose body is not JSON", Decision.RETRY, SUCCESSFUL,
         detail=f"^{re.escape(NOT_JSON)}$"),
    Rule("the attachment method answering success", Decision.SUCCESS, SUCCESSFUL,
         call=f"^{ATTACH}$", detail=f"^{re.escape(SUCCESS_FLAG)}$"),
    Rule("the attachment method answering a message that says not found", Decision.INVALID,
         SUCCESSFUL, call=f"^{ATTACH}$", detail=NOT_FOUND, error=NotFound),
    Rule("the attachment method answering a message without success", Decision.INVALID,
         SUCCESSFUL, call=f"^{ATTACH}$"),
    Rule("401: the token refused (signed in again once when e-mail and password are set)",
         Decision.HELD, status(401)),
    Rule("403: the account may not use the support API", Decision.HELD, status(403)),
    # 500 "is also used for 'no access'" (providers/plusofon.md): to one ticket.
    Rule("5xx whose message says access is denied", Decision.INVALID, SERVER_ERRORS,
         detail=r"access denied|no access|forbidden|доступ", error=Forbidden),
), credentials="PLUSOFON_TOKEN (or PLUSOFON_EMAIL and PLUSOFON_PASSWORD)")
_MESSAGE_LIMIT = 300


def answer_of(response: httpx.Response, body: Any, *, call: str) -> Answer:
    """The answer as the table sees it; the body's code wins over a 2xx."""
    code = body.get("code") if isinstance(body, dict) else None
    effective = response.status_code
    if effective < 300 and isinstance(code, int) and code >= 400:
        effective = code
    if body is NOT_JSON:
        detail = NOT_JSON
    elif call == ATTACH and effective < 300 and isinstance(body, dict) and body.get("success"):
        detail = SUCCESS_FLAG
    else:
        detail = _message_of(body)
    return Answer(effective, detail, retry_after=retry_after(response.headers), call=call)


def _message_of(body: Any) -> str:
    if not isinstance(body, dict) or "message" not in body:
        return ""
    # The not-found dump carries headers and CRLFs: keep it on one short line.
    text = " ".join(str(body["message"]).split())
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


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
    ) -> Any:
        where = f"{method} {path}"
        renewed = False
        while True:
            token = await self._current_token()
            response = await send(self._http, method, path, where=where, provider=PROVIDER,
                                  json=json, params=params,
                                  headers={"Authorization": f"Bearer {token}"})
            body = self._body(response)
            answer = answer_of(response, body, call=where)
            error = TABLE.classify(answer, where=where)
            if error is None:
                return body
            if answer.status == 401 and self._settings.can_sign_in and not renewed:
                # Tokens expire: sign in again once, then repeat the call.
                log.info("plusofon refused the token; signing in again")
                await self._renew(token)
                renewed = True
                continue
            raise error

    def _body(self, response: httpx.Response) -> Any:
        """The JSON body, our secrets blanked out of its message before it
        can reach an exception (and from there the logs and dead letters)."""
        body = json_or(response, NOT_JSON)
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            body = {**body, "message": scrub(body["message"], self._secrets())}
        return body

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
            raise CredentialsRefused("no PLUSOFON_EMAIL/PLUSOFON_PASSWORD to sign in with",
                                     setting="PLUSOFON_EMAIL or PLUSOFON_PASSWORD",
                                     provider=PROVIDER)
        response = await send(
            self._http, "POST", "api/v1/login", where=LOGIN, provider=PROVIDER,
            json={"email": settings.email, "password": settings.password.get_secret_value()})
        body = self._body(response)
        TABLE.raise_for(answer_of(response, body, call=LOGIN), where=LOGIN)
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthFailed(f"{LOGIN}: the answer carries no token", provider=PROVIDER)
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
