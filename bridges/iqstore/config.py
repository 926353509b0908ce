"""iqstore settings (the `IQSTORE_*` names of DESIGN.md's configuration
contract, and a few tuning knobs; see `bridges.settings`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from bridges.settings import HttpUrl, ProviderSettings

# The client SDK puts every public method under this path (providers/iqstore.md).
PUBLIC_API_PATH = "/public/api/v1"
CUSTOMER_PLACEHOLDER = "{customer_ref}"


class IqstoreSettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="IQSTORE_")
    title: ClassVar[str] = "iqstore"

    # Customer side: the public chat API and the channel to talk in.
    public_base_url: HttpUrl
    channel: str
    # Agent side (optional): agent replies typed in Telegram go to iqstore
    # tickets through a service account.
    app_base_url: HttpUrl | None = None
    service_token: SecretStr | None = None
    # How a Telegram customer becomes an iqstore client: with this set, by
    # `/clients/integration_auth` with these credentials (`{customer_ref}` is
    # replaced by the customer's Telegram id; the company's integration must
    # accept them); unset, by an anonymous `/clients/signup`.
    integration_credentials: SecretStr | None = None
    # Polling: chats read per poll at most; a chat with activity in the last
    # `hot_seconds` is read every poll (but not twice within
    # `min_read_seconds`), a quieter one less often, at least every
    # `idle_poll_max_seconds`.
    poll_budget: int = Field(default=100, ge=1, le=10_000)
    hot_seconds: float = Field(default=300.0, ge=0)
    # Even a busy chat waits this long between reads, so that the follow-up
    # polls of one cycle (when the budget ran out) read the other chats.
    min_read_seconds: float = Field(default=5.0, ge=0)
    idle_poll_max_seconds: float = Field(default=1800.0, gt=0)
    history_page: int = Field(default=50, ge=2, le=100)
    read_concurrency: int = Field(default=8, ge=1, le=64)
    timeout_seconds: float = Field(default=30.0, gt=0)

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        value = value.strip()
        if not value or "/" in value or "?" in value:
            raise ValueError("must be a channel name such as 'support'")
        return value

    @field_validator("integration_credentials")
    @classmethod
    def _template(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and CUSTOMER_PLACEHOLDER not in value.get_secret_value():
            raise ValueError(f"must contain {CUSTOMER_PLACEHOLDER}")
        return value

    @model_validator(mode="after")
    def _agent_side(self) -> IqstoreSettings:
        if (self.app_base_url is None) != (self.service_token is None):
            raise ValueError("set both IQSTORE_APP_BASE_URL and IQSTORE_SERVICE_TOKEN, or neither")
        return self

    @property
    def public_api_url(self) -> str:
        base = self.public_base_url
        return base if base.endswith(PUBLIC_API_PATH) else base + PUBLIC_API_PATH

    @property
    def agent_side(self) -> bool:
        return self.app_base_url is not None and self.service_token is not None

    def credentials_for(self, customer_ref: str) -> str | None:
        if self.integration_credentials is None:
            return None
        template = self.integration_credentials.get_secret_value()
        return template.replace(CUSTOMER_PLACEHOLDER, customer_ref)
