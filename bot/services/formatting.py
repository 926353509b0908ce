"""Helpdesk HTML → Telegram HTML.

Helpdesk replies arrive as arbitrary HTML (Omnidesk `content_html`, e-mail
bodies). They are never passed to Telegram raw: nh3 (ammonia) first removes
scripts, styles, event handlers and unknown tags, then this converter maps
what is left onto the few tags Telegram accepts and turns block structure
into line breaks. The result is always balanced, escaped Telegram HTML.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import nh3

_KEEP = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre",
    "blockquote", "br", "p", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6",
    "tr", "td", "th", "table", "tbody", "thead", "span", "hr",
}
_INLINE = {"b": "b", "strong": "b", "i": "i", "em": "i", "u": "u", "ins": "u",
           "s": "s", "strike": "s", "del": "s", "code": "code", "pre": "pre",
           "blockquote": "blockquote"}
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_BLOCKS = {"p", "div", "ul", "ol", "table", "tr", "hr", *_HEADINGS}
_SAFE_SCHEMES = ("http://", "https://", "mailto:", "tg://")


def helpdesk_html_to_telegram(source: str) -> str:
    cleaned = nh3.clean(source, tags=_KEEP, attributes={"a": {"href"}},
                        url_schemes={"http", "https", "mailto", "tg"}, link_rel=None)
    converter = _Converter()
    converter.feed(cleaned)
    converter.close()
    return converter.result()


def html_to_text(source: str) -> str:
    """Plain text of helpdesk HTML (for places that take no markup)."""
    converted = helpdesk_html_to_telegram(source)
    return html.unescape(re.sub(r"<[^>]+>", "", converted))


class _Converter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._open: list[str] = []  # Telegram tags currently open

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self._out.append("\n")
        elif tag == "li":
            self._newline()
            self._out.append("• ")
        elif tag in _BLOCKS:
            self._newline()
            if tag in _HEADINGS:
                self._push("b")
        elif tag == "td" or tag == "th":
            self._out.append(" ")
        elif tag == "a":
            href = dict(attrs).get("href") or ""
            if href.startswith(_SAFE_SCHEMES):
                self._out.append(f'<a href="{html.escape(href, quote=True)}">')
                self._open.append("a")
            else:
                self._open.append("")  # keep the stack aligned, emit nothing
        elif tag in _INLINE:
            self._push(_INLINE[tag])

    def handle_endtag(self, tag: str) -> None:
        if tag in _HEADINGS:
            self._pop("b")
            self._newline()
        elif tag in _BLOCKS or tag == "li":
            self._newline()
        elif tag == "a":
            self._pop("a")
        elif tag in _INLINE:
            self._pop(_INLINE[tag])

    def handle_data(self, data: str) -> None:
        self._out.append(html.escape(data, quote=False))

    def _push(self, tag: str) -> None:
        self._out.append(f"<{tag}>")
        self._open.append(tag)

    def _pop(self, tag: str) -> None:
        if tag not in self._open:
            return
        # Close everything opened after `tag` too, so the output stays nested.
        while self._open:
            top = self._open.pop()
            if top:
                self._out.append(f"</{top}>")
            if top == tag:
                break

    def _newline(self) -> None:
        if self._out and not "".join(self._out[-2:]).endswith("\n"):
            self._out.append("\n")

    def result(self) -> str:
        while self._open:
            top = self._open.pop()
            if top:
                self._out.append(f"</{top}>")
        text = "".join(self._out)
        text = re.sub(r"[ \t]+\n", "\n", text)
        return re.sub(r"\n{3,}", "\n\n", text).strip()
