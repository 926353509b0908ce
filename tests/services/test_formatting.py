from __future__ import annotations

from html.parser import HTMLParser

from hypothesis import given
from hypothesis import strategies as st

from bot.services.formatting import helpdesk_html_to_telegram
from bot.services.render import TELEGRAM_TEXT_LIMIT, split_text

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


def test_split_text_respects_limit_and_keeps_everything() -> None:
    lines = [f"line {i} " + "x" * 50 for i in range(300)]
    chunks = split_text("\n".join(lines))
    assert len(chunks) > 1
    assert all(len(c) <= TELEGRAM_TEXT_LIMIT for c in chunks)
    assert "\n".join(chunks).split("\n") == lines


def test_split_text_never_leaves_broken_markup() -> None:
    text = "<b>" + "word " * 2000 + "</b>"
    for chunk in split_text(text):
        assert_telegram_html(chunk)
        assert len(chunk) <= TELEGRAM_TEXT_LIMIT
