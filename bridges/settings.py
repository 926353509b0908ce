"""Provider settings: one pydantic-settings class per provider, its fields
named by an environment prefix (`OMNIDESK_API_KEY` is `api_key` of the
class with prefix `OMNIDESK_`).

`from_env()` reads the process environment and `.env` in the working
directory, as the bot's own settings do; `from_env(mapping)` reads only the
mapping the bot (or a test) hands over in `BridgeDeps.env`. Blank values
count as unset. Errors name the variables at fault, never their values
(some are secrets).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Annotated, Any, ClassVar, Self

from pydantic import AfterValidator, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


def http_url(value: str) -> str:
    """An http(s) URL, without trailing slashes."""
    value = value.strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError("must be an http(s) URL")
    return value


HttpUrl = Annotated[str, AfterValidator(http_url)]

# Set while settings are built from a mapping: the environment is not read then.
_ONLY_GIVEN: ContextVar[bool] = ContextVar("only_given", default=False)


class ProviderSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True,
                                      env_ignore_empty=True)

    # What error messages call the provider ("Omnidesk settings: ...").
    title: ClassVar[str] = "provider"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if _ONLY_GIVEN.get():
            return (init_settings,)
        return (init_settings, env_settings, dotenv_settings, file_secret_settings)

    @classmethod
    def prefix(cls) -> str:
        return str(cls.model_config.get("env_prefix") or "")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """Validated settings from `env`, or (None) from the environment and
        `.env`; a ValueError names the variables at fault."""
        prefix = cls.prefix()
        token = None
        values: dict[str, Any] = {}
        if env is not None:
            token = _ONLY_GIVEN.set(True)
            values = {name[len(prefix):].lower(): value for name, value in env.items()
                      if name.upper().startswith(prefix) and value.strip()
                      and name[len(prefix):].lower() in cls.model_fields}
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{prefix}{'.'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
                if error["loc"] else error["msg"]
                for error in exc.errors(include_input=False, include_url=False))
            raise ValueError(f"{cls.title} settings: {problems}") from None
        finally:
            if token is not None:
                _ONLY_GIVEN.reset(token)
