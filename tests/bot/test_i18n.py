from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from bot.i18n import LANGUAGES, catalog, gettext, pick_language, po_path

ROOT = Path(__file__).resolve().parents[2]
KEY = re.compile(r"^([a-z]+)\.[a-z_]+$")


def test_every_key_exists_in_every_language() -> None:
    keys = [set(catalog(lang)) for lang in LANGUAGES]
    assert all(k == keys[0] for k in keys), {
        lang: sorted(keys[0] ^ set(catalog(lang))) for lang in LANGUAGES}


def test_catalogs_are_clean_gettext_files() -> None:
    """Each .po parses, declares its language, and has no fuzzy or empty entry
    (both would silently fall back to English)."""
    for lang in LANGUAGES:
        with po_path(lang).open("rb") as fh:
            po = read_po(fh, abort_invalid=True)
        assert str(po.locale) == lang
        entries = [m for m in po if m.id]
        assert entries
        assert not [m.id for m in entries if m.fuzzy or not m.string], lang
        assert len(entries) == len(catalog(lang))


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


def test_every_key_like_literal_in_code_exists() -> None:
    """Also keys passed around before they reach gettext (outbox payloads,
    conditional expressions): every string literal that looks like a key."""
    # A string literal "<namespace>.<name>" is a key when a catalog has that namespace.
    namespaces = {key.split(".")[0] for key in catalog("en")}
    used: set[str] = set()
    for path in (ROOT / "bot").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # f"card.status_{x}" is checked where the full keys are listed, not here.
        in_fstrings = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)
                       for part in node.values}
        for node in ast.walk(tree):
            if id(node) in in_fstrings:
                continue
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                match = KEY.match(node.value)
                if match and match.group(1) in namespaces:
                    used.add(node.value)
    assert len(used) > 100, "the scan found too little: it is broken"
    assert not used - set(catalog("en"))


@pytest.mark.parametrize(("code", "expected"), [
    ("ru", "ru"), ("ru-RU", "ru"), ("en-US", "en"), ("uk", "ru"), ("de", "en"), (None, "en"),
])
def test_pick_language(code: str | None, expected: str) -> None:
    assert pick_language(code) == expected


def test_gettext_formats_and_falls_back() -> None:
    assert gettext("ru", "customer.placed", number="7") == "Добавлено в обращение #7."
    assert gettext("xx", "customer.placed", number="7") == "Added to request #7."
    with pytest.raises(KeyError):
        gettext("en", "customer.no_such_text")
