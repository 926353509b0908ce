"""Plusofon settings (the `PLUSOFON_*` names of DESIGN.md's configuration
contract; see `bridges.settings`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from bridges.settings import HttpUrl, ProviderSettings

DEFAULT_BASE_URL = "https://restapi.plusofon.ru"
# The fixed application code every public Plusofon client sends (providers/plusofon.md).
DEFAULT_CLIENT = "10553"


class PlusofonSettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="PLUSOFON_")
    title: ClassVar[str] = "Plusofon"

    base_url: HttpUrl = DEFAULT_BASE_URL
    # A ready API token; or an account's e-mail and password, which the
    # bridge exchanges for a token (and again whenever the token expires).
    token: SecretStr | None = None
    email: str | None = None
    password: SecretStr | None = None
    client: str = DEFAULT_CLIENT
    # Ticket reads (`GET api/v1/ticket/{id}`) per poll at most; the rest
    # wait for the follow-up poll the scheduler runs at once.
    poll_budget: int = Field(default=100, ge=1, le=10_000)
    timeout_seconds: float = Field(default=30.0, gt=0)

    @field_validator("client")
    @classmethod
    def _client_code(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> PlusofonSettings:
        if self.token is None and not (self.email and self.password):
            raise ValueError("set PLUSOFON_TOKEN, or PLUSOFON_EMAIL and PLUSOFON_PASSWORD")
        return self

    @property
    def can_sign_in(self) -> bool:
        return bool(self.email and self.password)
