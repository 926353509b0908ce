"""Settings of the Zenlix bridge, read from the environment dict the registry
hands over (`BridgeDeps.env`).

The three names of the configuration contract (`ZENLIX_BASE_URL`,
`ZENLIX_LOGIN`, `ZENLIX_PASSWORD`) are required; the rest have defaults that
suit a typical install (see providers/zenlix.md for where they come from).
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

# Users, clients and tickets are addressed by 32 hex characters (providers/zenlix.md).
HASH_PATTERN = re.compile(r"^[0-9a-f]{32}$")

ENV_NAMES = {
    "base_url": "ZENLIX_BASE_URL",
    "login": "ZENLIX_LOGIN",
    "password": "ZENLIX_PASSWORD",
    "default_client": "ZENLIX_DEFAULT_CLIENT",
    "default_unit": "ZENLIX_DEFAULT_UNIT",
    "default_subject": "ZENLIX_DEFAULT_SUBJECT",
    "calls_per_cycle": "ZENLIX_CALLS_PER_CYCLE",
    "idle_max_cycles": "ZENLIX_IDLE_MAX_CYCLES",
    "timezone": "ZENLIX_TIMEZONE",
    "timeout_seconds": "ZENLIX_TIMEOUT_SECONDS",
}


class ZenlixSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # The installation's base URL; the API is `<base>/api.php`.
    base_url: str
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
        value = value.strip()
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http(s) URL of the Zenlix installation")
        value = value.rstrip("/")
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

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ZenlixSettings:
        """Settings from `ZENLIX_*` variables. Errors name the variables, never
        their values (the password must not reach a log)."""
        values: dict[str, Any] = {}
        for field, name in ENV_NAMES.items():
            raw = env.get(name)
            if raw is not None and raw.strip() != "":
                values[field] = raw
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{ENV_NAMES.get(str(error['loc'][0]), error['loc'][0]) if error['loc'] else '?'}:"
                f" {error['msg']}"
                for error in exc.errors(include_input=False, include_url=False)
            )
            raise ValueError(f"Zenlix settings: {problems}") from None
