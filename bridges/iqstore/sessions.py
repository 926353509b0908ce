"""iqstore client sessions, one per Telegram customer: each customer is an
iqstore client of their own (signed up, or signed in by integration
credentials), and a chat can only be read or written with its client's
session token, renewed once when iqstore refuses it (providers/iqstore.md)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from bridges.base import CustomerIdentity
from bridges.errors import AuthFailed
from bridges.iqstore.client import PROVIDER, IqstoreClient
from bridges.iqstore.config import IqstoreSettings
from bridges.iqstore.records import client_record
from bridges.state import BridgeState

log = logging.getLogger("deskbridge.bridges.iqstore")
T = TypeVar("T")


class ClientSessions:
    def __init__(self, client: IqstoreClient, state: BridgeState,
                 settings: IqstoreSettings) -> None:
        self._client = client
        self._state = state
        self._settings = settings
        self._tokens: dict[int, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def client_of(self, customer: CustomerIdentity) -> int:
        """The customer's iqstore client, signed up (or in) on first use."""
        ref = customer.customer_ref
        if found := await self._state.get(f"customer:{ref}"):
            return int(found)
        async with self._lock(f"customer:{ref}"):
            if found := await self._state.get(f"customer:{ref}"):
                return int(found)
            credentials = self._settings.credentials_for(ref)
            if credentials is not None:
                auth = await self._client.integration_auth(credentials)
            else:
                auth = await self._client.signup(display_name(customer))
            client_id = auth.client.id
            await self._state.set_many({
                f"client:{client_id}": json.dumps({"token": auth.session.token,
                                                   "customer": ref}),
                f"customer:{ref}": str(client_id),
            })
            self._tokens[client_id] = auth.session.token
            log.info("iqstore client %s opened for customer %s", client_id, ref)
            return client_id

    async def as_client(self, client_id: int, call: Callable[..., Awaitable[T]],
                         **kwargs: Any) -> T:
        """`call(token, **kwargs)` with the client's session, renewed once if refused."""
        token = await self._token(client_id)
        try:
            return await call(token, **kwargs)
        except AuthFailed:
            token = await self._renew(client_id, token)
            return await call(token, **kwargs)

    async def _token(self, client_id: int) -> str:
        if client_id not in self._tokens:
            record = client_record(await self._state.get(f"client:{client_id}"))
            if record.get("token") is None:
                raise AuthFailed(f"no session for iqstore client {client_id}",
                                 provider=PROVIDER)
            self._tokens[client_id] = record["token"]
        return self._tokens[client_id]

    async def _renew(self, client_id: int, refused: str) -> str:
        async with self._lock(f"client:{client_id}"):
            if (cached := self._tokens.get(client_id)) and cached != refused:
                return cached  # renewed meanwhile
            record = client_record(await self._state.get(f"client:{client_id}"))
            if record.get("token") and record["token"] != refused:
                self._tokens[client_id] = record["token"]  # by another process
                return str(record["token"])
            credentials = (self._settings.credentials_for(record["customer"])
                           if record.get("customer") else None)
            log.info("iqstore session of client %s expired; signing in again", client_id)
            auth = await (self._client.integration_auth(credentials) if credentials
                          else self._client.auth(refused))
            if auth.client.id != client_id:
                raise AuthFailed(f"iqstore renewed the session of client {client_id} as "
                                 f"client {auth.client.id}", provider=PROVIDER)
            await self._state.set(f"client:{client_id}", json.dumps(
                {**record, "token": auth.session.token}))
            self._tokens[client_id] = auth.session.token
            return auth.session.token

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def preload(self, client_ids: Iterable[int]) -> None:
        """The tokens of these clients, in one read, before reading their chats."""
        missing = [client for client in client_ids if client not in self._tokens]
        for name, value in (await self._state.get_many(f"client:{c}" for c in missing)).items():
            token = client_record(value).get("token")
            if token:
                self._tokens[int(name.removeprefix("client:"))] = token


def display_name(customer: CustomerIdentity) -> str:
    name = customer.full_name.strip() or f"Telegram {customer.customer_ref}"
    return f"{name} (@{customer.username})" if customer.username else name


def _client_record(value: str | None) -> dict[str, Any]:
    return json.loads(value) if value else {}


