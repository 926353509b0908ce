"""Text a strict-mode Zenlix install stores (bridges/zenlix/text.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.sandbox.zenlix import _cutstr_api, api_text
from bridges.zenlix.text import (
    COMMENT_LIMIT,
    LIST_SAFE_MARK,
    list_cut,
    list_safe_head,
    lists_cleanly,
    split_for_comments,
    storable,
)


@pytest.mark.parametrize(("raw", "stored"), [
    ("Спасибо 👍", "Спасибо [thumbs up sign]"),
    ("ok 👍🏽", "ok [thumbs up sign]"),  # the skin tone goes with it
    ("family 👨‍👩‍👧", "family [man][woman][girl]"),  # joined by ZWJs
    ("flag 🇺🇦!", "flag [flag UA]!"),
    ("heart ❤️ stays", "heart ❤️ stays"),  # U+2764 U+FE0F: both in the BMP
    ("math 𝔸", "math [mathematical double-struck capital a]"),
    ("a < b and c > d", "a < b and c > d"),  # strip_tags keeps "< "
    ("Is 2 <", "Is 2 ‹"),  # a `<` at the end would start a tag (issue 14)
    ("a <\u00a0b> c", "a ‹\u00a0b> c"),  # ...and one before a no-break space
    ("x <\u3000y", "x ‹\u3000y"),
    ("tab <\tand newline <\n", "tab <\tand newline <\n"),
    ("see <b>this</b>", "see ‹b>this‹/b>"),  # would have been stripped
    ("[file:report.pdf] and more", "[file :report.pdf] and more"),  # would have cut the comment
    ("bell\x07 and \x00nul", "bell and nul"),
    ("lone \ud83d surrogate", "lone \ufffd surrogate"),
])
def test_storable(raw: str, stored: str) -> None:
    assert storable(raw) == stored


@given(st.text(alphabet=st.sampled_from("<> \t\n\u00a0\u3000ab[file:") | st.characters()))
def test_storable_text_survives_the_server(text: str) -> None:
    stored = storable(text)
    assert all(ord(char) <= 0xFFFF for char in stored)
    assert not any(0xD800 <= ord(char) <= 0xDFFF for char in stored)
    stored.encode()  # valid UTF-8
    assert api_text(stored) == stored  # what get_ticket_comments returns


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


_LIST_TEXT = st.lists(st.sampled_from(["a", " ", "я", "我", "\U0001f600", "<br>", "\n"]),
                      max_size=160).map("".join)


@given(_LIST_TEXT)
def test_list_cut_is_what_ticket_list_shows(text: str) -> None:
    """The bridge's model of `cutstr_api` agrees with the fake's port of PHP's wordwrap."""
    assert list_cut(text) == _cutstr_api(text)


@pytest.mark.parametrize(("head", "body", "safe"), [
    ("", "short", ""),  # under 150 bytes: nothing to do
    ("Subj\n\n", "я" * 100, "Subj\n\n"),  # byte 150 starts a character: fine
    ("Subject\n\n", "я" * 100, "Subject \n\n"),  # ...here it does not: a space
    ("", "a" + "我" * 60, LIST_SAFE_MARK),  # no head to carry the space: a mark
    ("我" * 30 + "\n\n", "a" + "я" * 60, "我" * 30 + " \n\n"),  # at the end of the line
    ("a" + "我" * 60 + "\n\n", "body", "a" + "我" * 49 + " " + "我" * 11 + "\n\n"),  # in it
])
def test_list_safe_head(head: str, body: str, safe: str) -> None:
    assert list_safe_head(head, body) == safe
    assert lists_cleanly(safe + body)


@given(st.text(max_size=80) | _LIST_TEXT, _LIST_TEXT)
def test_a_list_safe_head_always_lists(head: str, body: str) -> None:
    head = storable(head)
    safe = list_safe_head(head, storable(body))
    assert lists_cleanly(safe + storable(body))
    assert safe.replace(" ", "") in (head.replace(" ", ""),
                                     (LIST_SAFE_MARK + head).replace(" ", ""))
