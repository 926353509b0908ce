from __future__ import annotations

import ast
import html
import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from bot.i18n import LANGUAGES, catalog, forms, gettext, ngettext, pick_language, po_path
from bot.sandbox.telegram_server import parse_html, utf16_len

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
        empty = [m.id for m in entries if m.fuzzy or not (
            all(m.string) if isinstance(m.string, tuple | list) else m.string)]
        assert not empty, lang
        assert len(entries) == len(catalog(lang))


def test_placeholders_match_across_languages() -> None:
    pattern = re.compile(r"{(\w+)}")
    for key, english in forms("en").items():
        expected = set(pattern.findall(english[-1]))
        for lang in LANGUAGES:
            for text in forms(lang)[key]:
                assert set(pattern.findall(text)) == expected, (lang, key, text)


def test_plural_entries_have_every_form_of_their_language() -> None:
    """Russian counts in three forms (1 оценка, 2 оценки, 5 оценок), English in two."""
    plural_keys = {key for key, texts in forms("en").items() if len(texts) > 1}
    assert {"stats.rating", "stats.window"} <= plural_keys
    for key in plural_keys:
        assert len(forms("en")[key]) == 2 and len(forms("ru")[key]) == 3, key
        assert all("{count}" in text for lang in LANGUAGES for text in forms(lang)[key]), key
    spread = "5⭐1"
    assert [ngettext("ru", "stats.rating", n, rating="4.0", spread=spread)
            for n in (1, 2, 5, 11, 21, 22)] == [
        f"Оценка: 4.0 из 5 ({n} {word}: {spread})" for n, word in (
            (1, "оценка"), (2, "оценки"), (5, "оценок"), (11, "оценок"), (21, "оценка"),
            (22, "оценки"))]
    assert [ngettext("en", "stats.rating", n, rating="4.0", spread=spread) for n in (1, 2)] == [
        f"Rating: 4.0 of 5 (1 rating: {spread})", f"Rating: 4.0 of 5 (2 ratings: {spread})"]
    with pytest.raises(KeyError):
        gettext("en", "stats.rating")  # a plural text is only read with its count


SAMPLE = "Ann & <Bob> \"7\""


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_text_passes_telegrams_html_parser(lang: str) -> None:
    """Every catalog entry, every plural form, with a sample value (escaped
    as the callers escape parameters) in each placeholder, is text Telegram
    accepts in HTML parse mode (the fake Bot API server's parser is tdlib's
    rules) and shows the sample as it was."""
    pattern = re.compile(r"{(\w+)}")
    failures = {}
    for key, texts in forms(lang).items():
        for template in texts:
            params = dict.fromkeys(pattern.findall(template), html.escape(SAMPLE, quote=False))
            text = template.format(**params)
            try:
                plain, _ = parse_html(text)
            except ValueError as exc:
                failures[key] = f"{exc}: {template!r}"
                continue
            if params:
                assert SAMPLE in plain, key
            assert utf16_len(plain) <= 4096, key
    assert not failures, failures


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
