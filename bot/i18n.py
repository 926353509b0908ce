"""User-visible texts in Russian and English, through gettext catalogs.

Texts live in `bot/locales/<lang>/LC_MESSAGES/messages.po`; the msgid is a
stable key (`customer.greeting`) and the msgstr the Telegram HTML text with
`{params}`. Every key exists in every language with the same placeholders (a
test checks). A text that counts something is a plural entry (`msgid_plural`,
one `msgstr[n]` per form of the language) read with `ngettext`. A user's
language comes from Telegram's `language_code` and can be changed in the
menu; the agent chat has one language (`AGENT_LANGUAGE`).

The catalogs are compiled in memory when first used (Babel reads the .po and
writes the .mo into a buffer that `gettext` loads), so a plain
`pip install -e .` runs without a compile step and there is no .mo that could
go stale next to its .po.
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALES_DIR = Path(__file__).parent / "locales"
DOMAIN = "messages"
LANGUAGES = ("ru", "en")
DEFAULT_LANGUAGE = "en"


def po_path(language: str) -> Path:
    return LOCALES_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def _po(language: str) -> Catalog:
    with po_path(language).open("rb") as fh:
        # abort_invalid: a broken catalog fails loudly at start, not as a missing text later.
        return read_po(fh, locale=language, domain=DOMAIN, abort_invalid=True)


@cache
def translations(language: str) -> Translations:
    buffer = io.BytesIO()
    write_mo(buffer, _po(language), use_fuzzy=False)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


@cache
def forms(language: str) -> dict[str, tuple[str, ...]]:
    """Every key of a language and its text: one form, or a plural key's
    forms in the language's order (fuzzy or empty entries excluded)."""
    found: dict[str, tuple[str, ...]] = {}
    for message in _po(language):
        if not message.id or message.fuzzy:
            continue
        key = message.id[0] if isinstance(message.id, tuple | list) else message.id
        texts = tuple(message.string) if isinstance(message.string, tuple | list) else (
            message.string,)
        if all(texts):
            found[str(key)] = tuple(str(text) for text in texts)
    return found


@cache
def catalog(language: str) -> dict[str, str]:
    """Every key of a language and its text (a plural key: its last form; all
    of them: `forms`)."""
    return {key: texts[-1] for key, texts in forms(language).items()}


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


def ngettext(language: str, key: str, count: int, /, **params: Any) -> str:
    """The form of a plural key for `count` ("1 оценка, 2 оценки, 5 оценок"),
    formatted with `count` and `params`."""
    language = language if language in LANGUAGES else DEFAULT_LANGUAGE
    template = translations(language).ngettext(key, key, count)
    if template == key and language != DEFAULT_LANGUAGE:
        template = translations(DEFAULT_LANGUAGE).ngettext(key, key, count)
    if template == key:
        raise KeyError(key)
    return template.format(count=count, **params)


def gettext(language: str, key: str, /, **params: Any) -> str:
    language = language if language in LANGUAGES else DEFAULT_LANGUAGE
    if len(forms(DEFAULT_LANGUAGE).get(key, ())) > 1:
        raise KeyError(f"{key} counts something: read it with ngettext")
    template = translations(language).gettext(key)
    if template == key and language != DEFAULT_LANGUAGE:
        template = translations(DEFAULT_LANGUAGE).gettext(key)
    if template == key:
        # An unknown key is a bug, not a text: say so instead of showing "a.b" to a user.
        raise KeyError(key)
    return template.format(**params) if params else template
