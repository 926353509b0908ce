"""HTTP clients of iqstore's public (client-side) and internal (agent-side)
APIs (providers/iqstore.md).

Both answer HTTP 200 with an envelope whatever happens (file methods
excepted), so an answer is a success only when it says `"OK": true`;
`iqstore_error` is the one place where answers become `bridges.errors`.
Tokens never reach a log line or an exception message.
"""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from bridges.errors import (
    AuthFailed,
    BridgeError,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    Unavailable,
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

PROVIDER = "iqstore"
NOT_JSON: Any = object()
_TEXT_LIMIT = 300
ModelT = TypeVar("ModelT", bound=BaseModel)

# ErrorCode values of the seeds, and the two the client SDK adds.
_ERROR_CODES: dict[str, type[BridgeError]] = {
    "not_found": NotFound,
    "forbidden": Forbidden,
    "unauthorized": AuthFailed,
    "invalid": Invalid,
    "bad_request": Invalid,
    "internal_server_error": Unavailable,
}


def iqstore_error(
    status: int, body: Any, *, retry_after: float | None = None, where: str = ""
) -> BridgeError | None:
    """The error an answer stands for, or None when it is a success.

    A 200 is only a success with `"OK": true` in the body: an answer without
    the flag (a proxy page, an empty body) is never taken for one. Other
    statuses come from the file methods, which may answer without an
    envelope, or from something in front of iqstore.
    """
    prefix = f"{where}: " if where else ""
    if not 200 <= status < 300:
        text = f"{prefix}HTTP {status}"
        if status == 401:
            return AuthFailed(text, provider=PROVIDER)
        if status == 403:
            return Forbidden(text, provider=PROVIDER)
        if status == 404:
            return NotFound(text, provider=PROVIDER)
        if status == 429:
            return RateLimited(text, retry_after=retry_after, provider=PROVIDER)
        if 400 <= status < 500:
            return Invalid(text, provider=PROVIDER)
        return Unavailable(text, provider=PROVIDER)
    if not isinstance(body, dict) or not isinstance(body.get("OK"), bool):
        return Unavailable(f"{prefix}answered without an OK flag", provider=PROVIDER)
    if body["OK"]:
        return None
    error = body.get("Error")
    code = str(error.get("Code") or "") if isinstance(error, dict) else ""
    text = " ".join(str(error.get("Text") or "").split()) if isinstance(error, dict) else ""
    text = text if len(text) <= _TEXT_LIMIT else text[: _TEXT_LIMIT - 1] + "…"
    # An unknown code is taken for a passing failure: retried, then dead-lettered.
    kind = _ERROR_CODES.get(code, Unavailable)
    return kind(f"{prefix}{code or 'error'} {text}".rstrip(), provider=PROVIDER)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


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
        return _page(await self._public_call(path, form, token=token), path)

    async def history(self, token: str, *, max_id: int | None, limit: int) -> ChatPage:
        """Up to `limit` messages before `max_id` (the newest without it)."""
        path = f"chats/channel/messages/{self._settings.channel}"
        query: dict[str, Any] = {"Limit": limit, "ChatType": "regular"}
        if max_id is not None:
            query["MaxId"] = max_id
        return _page(await self._public_call(path, query, token=token), path)

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
        try:
            response = await http.post(path, headers=headers, **kwargs)
        except httpx.TimeoutException:
            raise Unavailable(f"{where}: timed out", provider=PROVIDER) from None
        except httpx.HTTPError as exc:
            raise Unavailable(f"{where}: {type(exc).__name__}", provider=PROVIDER) from None
        try:
            body = response.json()
        except ValueError:
            body = NOT_JSON
        error = iqstore_error(response.status_code, body, retry_after=_retry_after(response),
                              where=where)
        if error is not None:
            raise self._scrubbed(error, (token, *secrets))
        return body

    def _scrubbed(self, error: BridgeError, values: tuple[str | None, ...]) -> BridgeError:
        message = str(error)
        service = self._settings.service_token
        for secret in (*values, service.get_secret_value() if service else None):
            if secret:
                message = message.replace(secret, "***")
        if message != str(error):
            error.args = (message,)
        return error


def _page(body: dict[str, Any], where: str) -> ChatPage:
    result = body.get("Result")
    items = result if isinstance(result, list) else []
    messages = [_parse(ChatMessage, item, where) for item in items]
    rels = body.get("Rels")
    return ChatPage(messages=sorted(messages, key=lambda m: m.id),
                    rels=_parse(Rels, rels, where) if isinstance(rels, dict) else Rels())


def _parse(model: type[ModelT], value: Any, where: str) -> ModelT:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise Unavailable(f"{where}: unexpected answer ({len(exc.errors())} problem(s))",
                          provider=PROVIDER) from None
