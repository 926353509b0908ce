"""Settings of the Zenlix bridge (`ZENLIX_*`, see `bridges.settings`).

The three names of the configuration contract (`ZENLIX_BASE_URL`,
`ZENLIX_LOGIN`, `ZENLIX_PASSWORD`) are required; the rest have defaults that
suit a typical install (see providers/zenlix.md for where they come from).
"""

from __future__ import annotations

import re
import zoneinfo
from functools import cached_property
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from bridges.settings import HttpUrl, ProviderSettings

# Users, clients and tickets are addressed by 32 hex characters (providers/zenlix.md).
HASH_PATTERN = re.compile(r"^[0-9a-f]{32}$")


class ZenlixSettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="ZENLIX_")
    title: ClassVar[str] = "Zenlix"

    # The installation's base URL; the API is `<base>/api.php`.
    base_url: HttpUrl
    # The service account the bridge signs in as (ideally a chief, priv 2,
    # who sees every open ticket and may unlock and reopen others' tickets).
    login: str = Field(min_length=1)
    password: SecretStr
    # Client hash used when a Telegram customer matches no Zenlix client.
    default_client: str | None = None
    # Department (`unit_id`) of tickets that name none; the first of
    # `get_unit_list` when unset. Never empty: strict MariaDB fails on "".
    default_unit: int | None = Field(default=None, ge=0)
    # Subject (`subj`, an id of `get_subj_list`, or its name) of tickets whose
    # subject matches no Zenlix subject; the first of the list when unset.
    default_subject: str | None = None
    # HTTP requests one `fetch_changes` may make; past it the cycle ends with
    # `more=True` and the scheduler polls again at once.
    calls_per_cycle: int = Field(default=50, ge=5, le=10_000)
    # The longest gap, in poll cycles, between two comment checks of a quiet
    # ticket: the worst-case notification latency when the budget suffices.
    idle_max_cycles: int = Field(default=8, ge=1, le=1_000)
    # Zenlix writes dates in the server's configured zone (default Europe/Kiev).
    timezone: str = "Europe/Kiev"
    timeout_seconds: float = Field(default=20.0, gt=0, le=600)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        # Accept the API's own address too: people paste what they see in docs.
        for suffix in ("/api.php", "/api"):
            if value.endswith(suffix):
                value = value[: -len(suffix)]
        return value

    @field_validator("default_client")
    @classmethod
    def _client_hash(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().lower()
        if not HASH_PATTERN.match(value):
            raise ValueError("must be a Zenlix client hash (32 hex characters)")
        return value

    @field_validator("default_subject")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @cached_property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api.php"

    def ticket_url(self, ticket_hash: str) -> str:
        # Zenlix's own notifications link tickets as `<hostname>ticket?<hash>`.
        return f"{self.base_url}/ticket?{ticket_hash}"
