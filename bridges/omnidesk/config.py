"""Omnidesk settings (`OMNIDESK_*`, see `bridges.settings`).

Names are fixed by the configuration contract (../shared/DESIGN.md):
`OMNIDESK_BASE_URL`, `OMNIDESK_STAFF_EMAIL`, `OMNIDESK_API_KEY` and the
optional `OMNIDESK_CHANNEL` (a custom channel, `cchNNN`); optionally
`OMNIDESK_TIMEOUT_SECONDS` for one API call (default 20).
"""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from bridges.settings import HttpUrl, ProviderSettings

_CHANNEL = re.compile(r"^cch\d+$")


class OmnideskSettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="OMNIDESK_")
    title: ClassVar[str] = "Omnidesk"

    # `https://<domain>.omnidesk.ru`; the API lives under `<base>/api/`.
    base_url: HttpUrl
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
