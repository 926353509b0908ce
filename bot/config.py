"""Settings: the configuration contract of ../shared/DESIGN.md.

Names are fixed so deployments and test harnesses can rely on them. Every
setting comes from the environment or from a `.env` file in the working
directory (the environment wins). Provider settings (OMNIDESK_*, ZENLIX_*,
...) are read by each bridge from `environment()`, the same merge; this
module keeps the ones the bot itself needs.

Every value is checked here, so a mistake stops the bot before anything
starts; `bot.settings_errors` turns a pydantic error into one line per
variable in the operator's language. A validator that knows *why* a value is
wrong raises a `PydanticCustomError` whose type picks a more precise message
(`config.<field>_<type>` in the catalogs).
"""

from __future__ import annotations

import os
import re
import zoneinfo
from functools import cached_property
from pathlib import Path
from typing import Annotated

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bridges.registry import providers

ENV_FILE = ".env"
# What .env.example ships with: recognised, so the operator is told to replace it.
EXAMPLE_TOKEN = "123456789:replace-with-your-token"
EXAMPLE_AGENT_CHAT_ID = -1001234567890
# BotFather's tokens are `<bot id>:<35 characters>`; test servers use shorter ones.
TOKEN_PATTERN = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]+$")
# Telegram's rule for setWebhook's secret_token.
WEBHOOK_SECRET_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
# Every subpackage of `bridges` is a provider (bridges.registry).
PROVIDERS = tuple(providers())
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DATABASE_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def environment(env_file: str | Path | None = ENV_FILE) -> dict[str, str]:
    """The process environment over the values of `.env` (in the working
    directory): what every part of deskbridge reads its settings from."""
    merged: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        merged.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    merged.update(os.environ)
    return merged


def _listen_address(value: str, *, allow_empty: bool) -> str:
    value = value.strip()
    if not value and allow_empty:
        return ""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise PydanticCustomError("listen", "must be host:port")
    return value


def _http_url(value: str) -> str:
    value = value.strip()
    if not re.match(r"^https?://[^/\s:]+(:\d+)?(/\S*)?$", value):
        raise PydanticCustomError("url", "must be an http(s) URL")
    return value


class DatabaseSettings(BaseSettings):
    """Just the database, for the commands that need no token (`migrate`,
    `outbox`, `erase-customer`)."""

    model_config = SettingsConfigDict(env_file=ENV_FILE, extra="ignore")

    database_url: str = "sqlite+aiosqlite:///deskbridge.db"

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        value = value.strip()
        try:
            url = make_url(value)
        except ArgumentError:
            raise PydanticCustomError("url", "not a database URL") from None
        backend = url.get_backend_name()
        if backend == "postgres":  # Heroku-style postgres://
            backend = "postgresql"
        expected = DATABASE_DRIVERS.get(backend)
        if expected is None:
            raise PydanticCustomError("url", "unsupported database")
        if url.drivername != expected:
            raise PydanticCustomError("driver", "needs the async driver",
                                      {"expected": f"{expected}://",
                                       "given": f"{url.drivername}://"})
        if backend == "postgresql" and not url.database:
            raise PydanticCustomError("url", "names no database")
        return value


class Settings(DatabaseSettings):
    model_config = SettingsConfigDict(env_file=ENV_FILE, extra="ignore", frozen=True)

    telegram_bot_token: SecretStr
    telegram_api_base: str = "https://api.telegram.org"
    agent_chat_id: int
    # Optional allow-list of Telegram user ids; empty = every member of the agent chat.
    agent_allowlist: Annotated[list[int], NoDecode] = Field(default_factory=list)
    # Language of texts in the agent chat.
    agent_language: str = "ru"
    redis_url: str | None = None
    provider: str = "local"
    poll_interval_seconds: float = Field(default=15.0, gt=0)
    # Dates people read (cards, reminders, histories, /stats days) are shown
    # in this zone, named next to the time.
    timezone: str = "UTC"

    webhook_url: str | None = None
    webhook_secret: SecretStr | None = Field(default=None, validate_default=True)
    webhook_listen: str = "0.0.0.0:8081"
    http_listen: str = "127.0.0.1:8080"

    # Outbox delivery and Telegram pacing (DESIGN.md: about 30/s overall,
    # 1/s per chat, 20/min per group).
    outbox_max_attempts: int = Field(default=10, ge=1)
    # How long a process may hold a claimed outbox row before another takes it over.
    outbox_lease_seconds: float = Field(default=60.0, gt=0)
    # Dead letters older than this are purged by the hourly housekeeping.
    outbox_dead_retention_days: float = Field(default=30.0, gt=0)
    # A provider call that takes longer is abandoned and retried with backoff.
    provider_timeout_seconds: float = Field(default=30.0, gt=0)
    # While the provider refuses our credentials, one probe call this often (bot.outbox.hold).
    provider_hold_probe_seconds: float = Field(default=60.0, gt=0)
    telegram_global_rate: float = Field(default=30.0, gt=0)
    telegram_chat_interval: float = Field(default=1.0, ge=0)
    telegram_group_per_minute: int = Field(default=20, ge=1)
    # Log level for the `deskbridge` loggers, and "text" or "json" lines.
    log_level: str = "INFO"
    log_format: str = "text"

    # SLA (bot.services.sla): minutes until an agent's first reply, and a next
    # reply to a customer who wrote again, is overdue (a reminder in the
    # ticket's topic and a summary in the general topic); days a ticket waiting
    # for the customer stays open before it is closed with a notice. 0 = off.
    sla_first_reply_minutes: float = Field(default=30.0, ge=0)
    sla_next_reply_minutes: float = Field(default=120.0, ge=0)
    sla_autoclose_days: float = Field(default=7.0, ge=0)
    sla_check_interval_seconds: float = Field(default=60.0, gt=0)

    # Flood control (bot.services.tickets): a customer's messages above this
    # rate are merged into one mirror and one helpdesk message. 0 = off.
    customer_messages_per_minute: int = Field(default=20, ge=0)

    @field_validator("telegram_bot_token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value().strip()
        if token == EXAMPLE_TOKEN:
            raise PydanticCustomError("example", "still the example value")
        if not TOKEN_PATTERN.match(token):
            raise PydanticCustomError("format", "not a bot token")
        return SecretStr(token)

    @field_validator("telegram_api_base")
    @classmethod
    def _api_base(cls, value: str) -> str:
        return _http_url(value).rstrip("/")

    @field_validator("agent_chat_id")
    @classmethod
    def _agent_chat(cls, value: int) -> int:
        if value == EXAMPLE_AGENT_CHAT_ID:
            raise PydanticCustomError("example", "still the example value")
        if value >= 0:  # users have positive ids, groups negative ones
            raise PydanticCustomError("positive", "not a group's id")
        return value

    @field_validator("agent_allowlist", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = value.replace(",", " ").split()
            if not all(re.fullmatch(r"\d{1,20}", part) for part in parts):
                raise PydanticCustomError("ids", "not a list of user ids")
            return [int(part) for part in parts]
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("agent_language")
    @classmethod
    def _language(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("ru", "en"):
            raise PydanticCustomError("choice", "not a supported language")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not re.match(r"^(rediss?|unix)://\S+$", value):
            raise PydanticCustomError("url", "not a Redis URL")
        return value

    @field_validator("provider")
    @classmethod
    def _provider(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in PROVIDERS:
            raise PydanticCustomError("choice", "unknown provider")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        value = value.strip()
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise PydanticCustomError("zone", "unknown time zone") from None
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return _http_url(value)

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        secret = value.get_secret_value().strip() if value is not None else ""
        if not secret:
            if info.data.get("webhook_url"):
                raise PydanticCustomError("missing_for_webhook", "required with WEBHOOK_URL")
            return None
        if not WEBHOOK_SECRET_PATTERN.match(secret):
            raise PydanticCustomError("format", "not a valid secret token")
        return SecretStr(secret)

    @field_validator("webhook_listen")
    @classmethod
    def _webhook_listen(cls, value: str) -> str:
        return _listen_address(value, allow_empty=False)

    @field_validator("http_listen")
    @classmethod
    def _http_listen(cls, value: str) -> str:
        return _listen_address(value, allow_empty=True)

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        value = value.strip().upper()
        if value not in LOG_LEVELS:
            raise PydanticCustomError("choice", "unknown log level")
        return value

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("text", "json"):
            raise PydanticCustomError("choice", "unknown log format")
        return value

    @cached_property
    def bot_id(self) -> int:
        return int(self.telegram_bot_token.get_secret_value().split(":", 1)[0])


def split_host_port(listen: str, default_port: int) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host:
        return listen or "127.0.0.1", default_port
    return host.strip("[]"), int(port)

