"""User-visible texts in Russian and English.

Texts live in `bot/locales/<lang>.toml` as `key = "text with {params}"`;
every key exists in every language (a test checks). A user's language comes
from Telegram's `language_code` and can be changed in the menu.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

LOCALES_DIR = Path(__file__).parent / "locales"
LANGUAGES = ("ru", "en")
DEFAULT_LANGUAGE = "en"


@cache
def catalog(language: str) -> dict[str, str]:
    with (LOCALES_DIR / f"{language}.toml").open("rb") as fh:
        return _flatten(tomllib.load(fh))


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def pick_language(language_code: str | None) -> str:
    """Telegram's language_code ("ru", "ru-RU", "uk", None) → a supported language."""
    if language_code:
        base = language_code.split("-")[0].lower()
        if base in LANGUAGES:
            return base
        # Russian-speaking regions are the main audience (see the product brief).
        if base in {"uk", "be", "kk", "uz", "ky", "tg"}:
            return "ru"
    return DEFAULT_LANGUAGE


def gettext(language: str, key: str, /, **params: Any) -> str:
    texts = catalog(language if language in LANGUAGES else DEFAULT_LANGUAGE)
    template = texts.get(key) or catalog(DEFAULT_LANGUAGE)[key]
    return template.format(**params) if params else template
