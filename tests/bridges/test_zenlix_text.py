"""Text a strict-mode Zenlix install stores (bridges/zenlix/text.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.sandbox.zenlix import _api_text
from bridges.zenlix.text import COMMENT_LIMIT, split_for_comments, storable


@pytest.mark.parametrize(("raw", "stored"), [
    ("Спасибо 👍", "Спасибо [thumbs up sign]"),
    ("ok 👍🏽", "ok [thumbs up sign]"),  # the skin tone goes with it
    ("family 👨‍👩‍👧", "family [man][woman][girl]"),  # joined by ZWJs
    ("flag 🇺🇦!", "flag [flag UA]!"),
    ("heart ❤️ stays", "heart ❤️ stays"),  # U+2764 U+FE0F: both in the BMP
    ("math 𝔸", "math [mathematical double-struck capital a]"),
    ("a < b and c > d", "a < b and c > d"),  # strip_tags keeps "< "
    ("see <b>this</b>", "see ‹b>this‹/b>"),  # would have been stripped
    ("[file:report.pdf] and more", "[file :report.pdf] and more"),  # would have cut the comment
    ("bell\x07 and \x00nul", "bell and nul"),
    ("lone \ud83d surrogate", "lone \ufffd surrogate"),
])
def test_storable(raw: str, stored: str) -> None:
    assert storable(raw) == stored


@given(st.text())
def test_storable_text_survives_the_server(text: str) -> None:
    stored = storable(text)
    assert all(ord(char) <= 0xFFFF for char in stored)
    assert not any(0xD800 <= ord(char) <= 0xDFFF for char in stored)
    stored.encode()  # valid UTF-8
    assert _api_text(stored) == stored  # what get_ticket_comments returns


@given(st.text(min_size=0, max_size=6000), st.integers(min_value=1, max_value=3000))
def test_split_keeps_everything_in_order(text: str, limit: int) -> None:
    pieces = split_for_comments(text, limit)
    assert "".join(pieces) == text
    assert all(len(piece) <= limit for piece in pieces)
    assert all(pieces) or pieces == [""]


def test_split_prefers_paragraphs_and_words() -> None:
    paragraph = "word " * 300  # 1500 characters
    pieces = split_for_comments(f"{paragraph}\n\n{paragraph}\n\n{paragraph}", COMMENT_LIMIT)
    assert len(pieces) == 3
    assert pieces[0].endswith("\n\n") and pieces[1].endswith("\n\n")
    dense = "x" * 5000
    assert [len(piece) for piece in split_for_comments(dense, COMMENT_LIMIT)] == [2048, 2048, 904]
