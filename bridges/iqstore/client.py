"""HTTP clients of iqstore's public (client-side) and internal (agent-side)
APIs (providers/iqstore.md).

Both answer HTTP 200 with an envelope whatever happens (file methods
excepted), so an answer is a success only when it says `"OK": true`;
`TABLE` is the one place where answers become `bridges.errors`.
Tokens never reach a log line or an exception message.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from bridges.errors import AuthFailed, Forbidden, Invalid, NotFound, Unavailable
from bridges.http import (
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
from bridges.iqstore.config import IqstoreSettings
from bridges.iqstore.models import (
    ChatMessage,
    ChatPage,
    ClientAuth,
    ClientInfo,
    Rels,
    TicketMessage,
    UploadedFile,
)
from bridges.parsing import readable

PROVIDER = "iqstore"
NO_FLAG, OK = "(no OK flag)", "(OK)"
AGENT_API = r"^api/"  # the internal API, as the service account
ModelT = TypeVar("ModelT", bound=BaseModel)

# iqstore's answers (providers/iqstore.md): HTTP 200 with an envelope whatever
# happens, a success only with `"OK": true`; errors as `{"Code", "Text"}`
# with the ErrorCode values of the seeds (and two the client SDK adds). File
# methods, and anything in front of iqstore, may answer other statuses.
TABLE = Table(PROVIDER, (
    Rule("2xx without an OK flag (a proxy page, an empty body)", Decision.RETRY, SUCCESSFUL,
         detail=f"^{re.escape(NO_FLAG)}$"),
    Rule("OK true", Decision.SUCCESS, SUCCESSFUL, detail=f"^{re.escape(OK)}$"),
    Rule("integration_auth refused (unauthorized, forbidden, invalid)", Decision.HELD,
         call="^clients/integration_auth$", detail=r"^(unauthorized|forbidden|invalid)\b",
         setting="IQSTORE_INTEGRATION_CREDENTIALS"),
    Rule("the service account refused (unauthorized or forbidden, HTTP 401 or 403)",
         Decision.HELD, call=AGENT_API, detail=r"^(unauthorized|forbidden)\b",
         setting="IQSTORE_SERVICE_TOKEN"),
    Rule("HTTP 401 or 403 to the service account", Decision.HELD, range(401, 404),
         call=AGENT_API, setting="IQSTORE_SERVICE_TOKEN"),
    Rule("not_found", Decision.INVALID, detail=r"^not_found\b", error=NotFound),
    Rule("forbidden", Decision.INVALID, detail=r"^forbidden\b", error=Forbidden),
    # A customer's own session: the bridge signs that customer in again.
    Rule("unauthorized: a customer's session (renewed)", Decision.RETRY,
         detail=r"^unauthorized\b", error=AuthFailed),
    Rule("HTTP 401: a customer's session (renewed)", Decision.RETRY, status(401),
         error=AuthFailed),
    Rule("invalid, bad_request", Decision.INVALID, detail=r"^(invalid|bad_request)\b"),
    # An unknown code is taken for a passing failure: retried, then dead-lettered.
    Rule("internal_server_error or an unknown code", Decision.RETRY, SUCCESSFUL),
), credentials="IQSTORE_INTEGRATION_CREDENTIALS")


def answer_of(response: httpx.Response, *, call: str, secrets: tuple[str | None, ...]
              ) -> tuple[Answer, Any]:
    """The answer as the table sees it (secrets blanked out of its text), and the body."""
    body = json_or(response, None)
    if 200 <= response.status_code < 300 and not (
            isinstance(body, dict) and isinstance(body.get("OK"), bool)):
        detail = NO_FLAG
    elif isinstance(body, dict) and body.get("OK") is True:
        detail = OK
    else:
        error = body.get("Error") if isinstance(body, dict) else None
        code = str(error.get("Code") or "") if isinstance(error, dict) else ""
        text = " ".join(str(error.get("Text") or "").split()) if isinstance(error, dict) else ""
        detail = scrub(f"{code or 'error'}: {text}".rstrip(": "), secrets) if error else ""
    return Answer(response.status_code, detail, retry_after=retry_after(response.headers),
                  call=call), body


class IqstoreClient:
    """The public API as a client (`Authorization: Client <session token>`)
    and, when configured, the internal API as a service account."""

    def __init__(
        self, settings: IqstoreSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._settings = settings
        self._public = httpx.AsyncClient(
            base_url=settings.public_api_url + "/", transport=transport,
            timeout=settings.timeout_seconds, headers={"Accept": "application/json"})
        self._app: httpx.AsyncClient | None = None
        if settings.app_base_url is not None and settings.service_token is not None:
            token = settings.service_token.get_secret_value()
            self._app = httpx.AsyncClient(
                base_url=settings.app_base_url + "/", transport=transport,
                timeout=settings.timeout_seconds,
                headers={"Accept": "application/json", "Authorization": f"Bearer {token}"})

    async def aclose(self) -> None:
        await self._public.aclose()
        if self._app is not None:
            await self._app.aclose()

    # -- public API, no session ----------------------------------------------------

    async def signup(self, name: str) -> ClientAuth:
        body = await self._public_call("clients/signup",
                                       {"Name": name, "Channel": self._settings.channel})
        return _parse(ClientAuth, body.get("Result"), "clients/signup")

    async def integration_auth(self, credentials: str) -> ClientAuth:
        body = await self._public_call(
            "clients/integration_auth",
            {"Credentials": credentials, "Channel": self._settings.channel},
            secrets=(credentials,))
        return _parse(ClientAuth, body.get("Result"), "clients/integration_auth")

    async def auth(self, token: str) -> ClientAuth:
        body = await self._public_call("clients/auth", {"Token": token}, secrets=(token,))
        return _parse(ClientAuth, body.get("Result"), "clients/auth")

    async def me(self, token: str | None) -> ClientInfo:
        body = await self._public_call("clients/me", None, token=token)
        return _parse(ClientInfo, body.get("Result"), "clients/me")

    # -- public API, as a client --------------------------------------------------------

    async def send(
        self, token: str, *, local_id: int, text: str, file_id: str | None = None
    ) -> ChatPage:
        """Send to the channel chat; the answer carries the chat's latest messages."""
        path = f"chats/channel/send/{self._settings.channel}"
        form: dict[str, Any] = {"LocalId": local_id, "Payload": "file" if file_id else "text",
                                "Text": text, "ChatType": "regular"}
        if file_id:
            form["FileId"] = file_id
        return chat_page(await self._public_call(path, form, token=token), path)

    async def history(self, token: str, *, max_id: int | None, limit: int) -> ChatPage:
        """Up to `limit` messages before `max_id` (the newest without it)."""
        path = f"chats/channel/messages/{self._settings.channel}"
        query: dict[str, Any] = {"Limit": limit, "ChatType": "regular"}
        if max_id is not None:
            query["MaxId"] = max_id
        return chat_page(await self._public_call(path, query, token=token), path)

    async def upload(
        self, token: str, *, file_name: str, data: bytes, mime_type: str | None, image: bool
    ) -> UploadedFile:
        kind = "image" if image else "file"
        files = {"File": (file_name, data, mime_type or "application/octet-stream")}
        body = await self._request(self._public, "files/upload", token=token,
                                   data={"Type": kind}, files=files)
        return _parse(UploadedFile, body.get("Result"), "files/upload")

    # -- internal API ----------------------------------------------------------------------

    async def create_message(self, ticket_id: int, *, local_id: int, text: str) -> TicketMessage:
        if self._app is None:
            raise Invalid("the agent side is not configured", provider=PROVIDER)
        body = await self._request(
            self._app, "api/tickets/create_message",
            json={"TicketId": ticket_id,
                  "Message": {"LocalId": local_id, "Type": "text", "Text": text}})
        data = body.get("Data")
        message = data.get("Message") if isinstance(data, dict) else None
        return _parse(TicketMessage, message, "api/tickets/create_message")

    # -- transport -----------------------------------------------------------------------

    async def _public_call(self, path: str, form: Any, *, token: str | None = None,
                           secrets: tuple[str, ...] = ()) -> dict[str, Any]:
        return await self._request(self._public, path, json=form, token=token, secrets=secrets)

    async def _request(
        self,
        http: httpx.AsyncClient,
        path: str,
        *,
        token: str | None = None,
        secrets: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> dict[str, Any]:
        where = f"POST {path}"
        headers = {"Authorization": f"Client {token}"} if token else {}
        response = await send(http, "POST", path, where=where, provider=PROVIDER,
                              headers=headers, **kwargs)
        service = self._settings.service_token
        answer, body = answer_of(response, call=path, secrets=(
            token, *secrets, service.get_secret_value() if service else None))
        TABLE.raise_for(answer, where=where)
        return dict(body)


def chat_page(body: dict[str, Any], where: str) -> ChatPage:
    """A page of a chat; no messages when `Result` is absent, null or empty."""
    result = body.get("Result")
    items = result if isinstance(result, list) else []
    messages = readable(ChatMessage, items, provider="iqstore", kind="message",
                        id_fields=("Id",))
    rels = body.get("Rels")
    return ChatPage(messages=sorted(messages, key=lambda m: m.id),
                    rels=_parse(Rels, rels, where) if isinstance(rels, dict) else Rels(),
                    entries=len(items))


def _parse(model: type[ModelT], value: Any, where: str) -> ModelT:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise Unavailable(f"{where}: unexpected answer ({len(exc.errors())} problem(s))",
                          provider=PROVIDER) from None
