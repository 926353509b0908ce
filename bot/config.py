"""Settings: the configuration contract of ../shared/DESIGN.md.

Names are fixed so deployments and test harnesses can rely on them. Provider
settings (OMNIDESK_*, ZENLIX_*, ...) are read by each bridge from the same
environment; this module keeps the ones the bot itself needs.
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    telegram_bot_token: SecretStr
    telegram_api_base: str = "https://api.telegram.org"
    agent_chat_id: int
    # Optional allow-list of Telegram user ids; empty = every member of the agent chat.
    agent_allowlist: Annotated[list[int], NoDecode] = Field(default_factory=list)
    # Language of texts in the agent chat.
    agent_language: str = "ru"
    database_url: str = "sqlite+aiosqlite:///deskbridge.db"
    redis_url: str | None = None
    provider: str = "local"
    poll_interval_seconds: float = 15.0

    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_listen: str = "0.0.0.0:8081"
    http_listen: str = "127.0.0.1:8080"

    # Outbox delivery and Telegram pacing (DESIGN.md: about 30/s overall,
    # 1/s per chat, 20/min per group).
    outbox_max_attempts: int = 10
    # How long a process may hold a claimed outbox row before another takes it over.
    outbox_lease_seconds: float = 60.0
    # A provider call that takes longer is abandoned and retried with backoff.
    provider_timeout_seconds: float = 30.0
    telegram_global_rate: float = 30.0
    telegram_chat_interval: float = 1.0
    telegram_group_per_minute: int = 20
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

    @field_validator("agent_allowlist", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(part) for part in value.replace(",", " ").split()]
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("provider")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()

    @cached_property
    def bot_id(self) -> int:
        return int(self.telegram_bot_token.get_secret_value().split(":", 1)[0])


def split_host_port(listen: str, default_port: int) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host:
        return listen or "127.0.0.1", default_port
    return host.strip("[]"), int(port)


class DatabaseSettings(BaseSettings):
    """Just the database, for `deskbridge migrate` (which needs no token)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///deskbridge.db"
