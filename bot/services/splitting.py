"""Splitting long Telegram HTML into messages without breaking formatting.

Telegram takes at most 4,096 characters of *text* per message (captions:
1,024), counted in UTF-16 code units after the markup is parsed. A long text
is cut at the last line break (or space) that fits; tags open at the cut are
closed at the end of one part and opened again at the start of the next, so
every part is valid HTML and the formatting carries over. Entities are never
cut: text is measured and cut unescaped, then escaped again.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

TAG = re.compile(r"(<[^<>]+>)")


def visible_length(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def _tag_name(tag: str) -> str:
    return tag.strip("</>").split()[0].lower()


@dataclass
class _Chunks:
    limit: int
    done: list[str] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    open_tags: list[str] = field(default_factory=list)  # the opening tags, outermost first
    used: int = 0

    def add_tag(self, tag: str) -> None:
        if tag.startswith("</"):
            name = _tag_name(tag)
            for index in range(len(self.open_tags) - 1, -1, -1):
                if _tag_name(self.open_tags[index]) == name:
                    del self.open_tags[index]
                    break
        elif not tag.endswith("/>"):
            self.open_tags.append(tag)
        self.parts.append(tag)

    def add_text(self, text: str) -> None:
        while text:
            room = self.limit - self.used
            if visible_length(text) <= room:
                self.parts.append(html.escape(text, quote=False))
                self.used += visible_length(text)
                return
            cut = _cut_point(text, room)
            if cut == 0 and self.used == 0:
                cut = max(1, _fit(text, room))  # not even one word fits: cut hard
            if cut:
                self.parts.append(html.escape(text[:cut], quote=False))
            text = text[cut:]
            self.flush()

    def flush(self) -> None:
        closing = "".join(f"</{_tag_name(tag)}>" for tag in reversed(self.open_tags))
        body = "".join(self.parts)
        if html.unescape(TAG.sub("", body)).strip():
            self.done.append(body + closing)
        self.parts = list(self.open_tags)  # reopen what was open
        self.used = 0

    def result(self) -> list[str]:
        if self.parts and html.unescape(TAG.sub("", "".join(self.parts))).strip():
            self.done.append("".join(self.parts))
        return self.done


def _fit(text: str, room: int) -> int:
    """How many characters of `text` fit in `room` UTF-16 units."""
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > room:
            return index
    return len(text)


def _cut_point(text: str, room: int) -> int:
    """Where to end this message: after the last line break that fits, else
    after the last space, else nothing (start the text in the next message)."""
    head = text[:_fit(text, room)]
    for separator in ("\n", " "):
        position = head.rfind(separator)
        if position > 0:
            return position + 1
    return 0


def split_html(text_html: str, limit: int) -> list[str]:
    """Parts of at most `limit` visible characters, each valid HTML."""
    if visible_length(html.unescape(TAG.sub("", text_html))) <= limit:
        return [text_html]
    chunks = _Chunks(limit)
    for token in TAG.split(text_html):
        if not token:
            continue
        if TAG.fullmatch(token):
            chunks.add_tag(token)
        else:
            chunks.add_text(html.unescape(token))
    return chunks.result()
