"""Omnidesk settings, read from the environment dict the registry hands in.

Names are fixed by the configuration contract (../shared/DESIGN.md):
`OMNIDESK_BASE_URL`, `OMNIDESK_STAFF_EMAIL`, `OMNIDESK_API_KEY` and the
optional `OMNIDESK_CHANNEL` (a custom channel, `cchNNN`); optionally
`OMNIDESK_TIMEOUT_SECONDS` for one API call (default 20).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

_CHANNEL = re.compile(r"^cch\d+$")
_ENV_NAMES = {
    "base_url": "OMNIDESK_BASE_URL",
    "staff_email": "OMNIDESK_STAFF_EMAIL",
    "api_key": "OMNIDESK_API_KEY",
    "channel": "OMNIDESK_CHANNEL",
    "timeout_seconds": "OMNIDESK_TIMEOUT_SECONDS",
}


class OmnideskSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    # `https://<domain>.omnidesk.ru`; the API lives under `<base>/api/`.
    base_url: str
    # The staff member whose rights bound what the key may see: use one with
    # full access (providers/omnidesk.md, "Basics").
    staff_email: str = Field(min_length=3)
    api_key: SecretStr
    # With a custom channel the customer is known by `user_custom_id` (their
    # Telegram id); without one, by `user_telegram_data` (username or phone).
    channel: str | None = None
    timeout_seconds: float = Field(default=20.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        # Tolerate a base given with the `/api` suffix: paths are appended to it.
        return value.removesuffix("/api")

    @field_validator("staff_email")
    @classmethod
    def _email(cls, value: str) -> str:
        value = value.strip()
        if "@" not in value:
            raise ValueError("must be an e-mail address")
        return value

    @field_validator("api_key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return SecretStr(value.get_secret_value().strip())

    @field_validator("channel", mode="before")
    @classmethod
    def _channel(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip() or None
        if isinstance(value, str) and not _CHANNEL.match(value):
            raise ValueError("must be a custom channel id like cch101")
        return value

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/api/"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OmnideskSettings:
        """Validated settings; the error names the variables at fault and
        never echoes their values (one of them is the API key)."""
        values = {field: env[name] for field, name in _ENV_NAMES.items() if name in env}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{_ENV_NAMES.get(str(error['loc'][0]), error['loc'][0])}: {error['msg']}"
                for error in exc.errors(include_input=False, include_url=False)
            )
            raise ValueError(f"Omnidesk settings are incomplete: {problems}") from None
