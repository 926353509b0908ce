from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.i18n import LANGUAGES, catalog, gettext, pick_language

ROOT = Path(__file__).resolve().parents[2]


def test_every_key_exists_in_every_language() -> None:
    keys = [set(catalog(lang)) for lang in LANGUAGES]
    assert all(k == keys[0] for k in keys), {
        lang: sorted(keys[0] ^ set(catalog(lang))) for lang in LANGUAGES}


def test_placeholders_match_across_languages() -> None:
    pattern = re.compile(r"{(\w+)}")
    for key, english in catalog("en").items():
        assert set(pattern.findall(english)) == set(pattern.findall(catalog("ru")[key])), key


def test_every_key_used_in_code_exists() -> None:
    """Literal keys in the code (gettext(lang, "a.b"), UserFacingError("a.b"))."""
    used: set[str] = set()
    pattern = re.compile(
        r"""(?:gettext\([^,]+,\s*|UserFacingError\()\s*["']([a-z_]+\.[a-z_]+)["']""")
    for path in (ROOT / "bot").rglob("*.py"):
        used |= set(pattern.findall(path.read_text(encoding="utf-8")))
    assert used, "the pattern found nothing: it is broken"
    missing = used - set(catalog("en"))
    assert not missing


@pytest.mark.parametrize(("code", "expected"), [
    ("ru", "ru"), ("ru-RU", "ru"), ("en-US", "en"), ("uk", "ru"), ("de", "en"), (None, "en"),
])
def test_pick_language(code: str | None, expected: str) -> None:
    assert pick_language(code) == expected


def test_gettext_formats_and_falls_back() -> None:
    assert gettext("ru", "customer.placed", number="7") == "Добавлено в обращение #7."
    assert gettext("xx", "customer.placed", number="7") == "Added to request #7."
