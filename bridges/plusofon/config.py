"""Plusofon settings, read from `BridgeDeps.env` (the `PLUSOFON_*` names of
DESIGN.md's configuration contract)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_PREFIX = "PLUSOFON_"
DEFAULT_BASE_URL = "https://restapi.plusofon.ru"
# The fixed application code every public Plusofon client sends (providers/plusofon.md).
DEFAULT_CLIENT = "10553"


class PlusofonSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    base_url: str = DEFAULT_BASE_URL
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

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value

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

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PlusofonSettings:
        """Validated settings; a ValueError names the bad variables and never
        echoes their values (they may be secrets)."""
        values = {
            name.removeprefix(ENV_PREFIX).lower(): value
            for name, value in env.items()
            if name.startswith(ENV_PREFIX) and value.strip()
        }
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ValueError(describe_errors(exc, ENV_PREFIX)) from None


def describe_errors(exc: ValidationError, prefix: str) -> str:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error["loc"]).upper()
        problems.append(f"{prefix}{where}: {error['msg']}" if where else error["msg"])
    return "invalid settings: " + "; ".join(problems)
