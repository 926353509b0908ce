from __future__ import annotations

import html
import re
from html.parser import HTMLParser

from hypothesis import given
from hypothesis import strategies as st

from bot.services.formatting import helpdesk_html_to_telegram
from bot.services.render import TELEGRAM_TEXT_LIMIT, split_text
from bot.services.splitting import split_html, visible_length

TELEGRAM_TAGS = {"b", "i", "u", "s", "a", "code", "pre", "blockquote"}


def assert_telegram_html(text: str) -> None:
    stack: list[str] = []

    class Check(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list) -> None:  # type: ignore[type-arg]
            assert tag in TELEGRAM_TAGS, tag
            stack.append(tag)

        def handle_endtag(self, tag: str) -> None:
            assert stack and stack.pop() == tag, (tag, text)

    checker = Check()
    checker.feed(text)
    checker.close()
    assert not stack, text


def test_scripts_and_unknown_tags_are_removed() -> None:
    out = helpdesk_html_to_telegram(
        '<p onclick="x()">Hello <strong>there</strong></p><script>alert(1)</script>'
        '<style>p{}</style><iframe src="https://evil"></iframe><blink>odd</blink>')
    assert out == "Hello <b>there</b>\nodd"


def test_links_keep_safe_schemes_only() -> None:
    out = helpdesk_html_to_telegram('<a href="javascript:alert(1)">x</a> '
                                    '<a href="https://example.com/?a=1&b=2">y</a>')
    assert "javascript" not in out
    assert '<a href="https://example.com/?a=1&amp;b=2">y</a>' in out


def test_broken_markup_is_balanced() -> None:
    out = helpdesk_html_to_telegram("<b>bold <i>both</b> after</i> <u>open")
    assert_telegram_html(out)
    assert "bold" in out and "open" in out


def test_lists_and_breaks() -> None:
    out = helpdesk_html_to_telegram("<ul><li>one</li><li>two &lt;3</li></ul>line<br>next")
    assert out == "• one\n• two &lt;3\nline\nnext"


TOKENS = [*"ab<>/&;\"' =\n", "<b>", "</b>", "<i>", "</i>", "<p>", "</p>", "<script>",
          "<a href='https://x'>", "</a>", "&amp;", "<br>", "<li>", "<h1>", "</h1>"]


@given(st.lists(st.sampled_from(TOKENS), max_size=40).map("".join))
def test_any_input_gives_valid_telegram_html(source: str) -> None:
    assert_telegram_html(helpdesk_html_to_telegram(source))


def visible(text_html: str) -> str:
    return html.unescape(re.sub(r"<[^<>]+>", "", text_html))


def test_split_text_respects_limit_and_keeps_everything() -> None:
    lines = [f"line {i} " + "x" * 50 for i in range(300)]
    text = "\n".join(lines)
    chunks = split_text(text)
    assert len(chunks) > 1
    assert all(visible_length(visible(c)) <= TELEGRAM_TEXT_LIMIT for c in chunks)
    assert "".join(visible(c) for c in chunks) == text
    assert all(c.endswith("\n") for c in chunks[:-1])  # cut at line breaks


def test_split_text_carries_formatting_over() -> None:
    text = "<b>" + "word " * 2000 + "</b>"
    chunks = split_text(text)
    assert len(chunks) == 3
    for chunk in chunks:
        assert_telegram_html(chunk)
        assert chunk.startswith("<b>") and chunk.endswith("</b>")
        assert visible_length(visible(chunk)) <= TELEGRAM_TEXT_LIMIT


def test_split_text_never_cuts_an_entity_or_a_surrogate_pair() -> None:
    text = ("&amp;😀" * 3000)
    chunks = split_html(text, 100)
    assert "".join(visible(c) for c in chunks) == "&😀" * 3000
    assert all(visible_length(visible(c)) <= 100 for c in chunks)


HTML_TOKENS = ["<b>", "</b>", "<i>", "</i>", '<a href="https://e.x/?a=1&amp;b=2">', "</a>",
               "<code>", "</code>", "<blockquote>", "</blockquote>", "word ", "слово ", "\n",
               "&lt;", "&amp;", "😀", "x" * 37]


@st.composite
def balanced_html(draw: st.DrawFn) -> str:
    out: list[str] = []
    stack: list[str] = []
    for token in draw(st.lists(st.sampled_from(HTML_TOKENS), max_size=400)):
        if token.startswith("</"):
            if stack and stack[-1] == token[2:-1]:
                out.append(token)
                stack.pop()
        elif token.startswith("<"):
            name = token[1:].split()[0].rstrip(">")
            if name not in stack:
                out.append(token)
                stack.append(name)
        else:
            out.append(token)
    out.extend(f"</{name}>" for name in reversed(stack))
    return "".join(out)


@given(balanced_html(), st.integers(min_value=20, max_value=300))
def test_any_split_is_valid_within_limit_and_complete(text: str, limit: int) -> None:
    chunks = split_html(text, limit)
    for chunk in chunks:
        assert_telegram_html(chunk)
        assert visible_length(visible(chunk)) <= limit
    assert "".join(visible(c) for c in chunks).strip() == visible(text).strip()
