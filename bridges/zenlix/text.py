"""Text a typical Zenlix install accepts, and what it does to text.

On MariaDB in strict mode (providers/zenlix.md, "Text limits") a ticket or
comment holding any character outside the Basic Multilingual Plane (every
emoji), or a comment over 2048 characters, fails with HTTP 500 and nothing is
stored. So the bridge replaces such characters by their names and splits long
texts into several comments, in order.

On the way out the server strips HTML from comments and cuts them at
`[file:`; `storable` defuses both so what is read back is what was sent.

`ticket_list` cuts each ticket's text at 150 bytes with PHP's `wordwrap`,
breaking words; when no ASCII space comes before byte 150 and a multibyte
character straddles it, `json_encode` fails and the whole list is empty
(seen on ZENLIX 2.95, issue 14). `list_safe_head` keeps the bridge's own
tickets out of that.
"""

from __future__ import annotations

import re
import unicodedata

COMMENT_LIMIT = 2048  # characters of one comment on a strict install

_BMP_END = 0xFFFF
_REGIONAL_A, _REGIONAL_Z = 0x1F1E6, 0x1F1FF
_SKIN_TONES = range(0x1F3FB, 0x1F400)
_TAGS = range(0xE0000, 0xE0080)  # subdivision-flag tags: meaningless once the flag is named
_JOINERS = {"\u200d", "\ufe0f", "\ufe0e"}  # ZWJ and emoji/text presentation selectors
# PHP's strip_tags starts a tag at a `<` unless the next byte is ASCII
# whitespace: a `<` at the very end, or before a no-break space (C2 A0) or an
# ideographic space, starts one too and swallows the text up to the next `>`.
# Only space, tab and newline are taken as safe (C's isspace has \r, \v and
# \f too, but a `‹` there costs nothing).
_TAG_START = re.compile(r"<(?![ \t\n])")
_FILE_MARK = re.compile(r"\[(file):", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def storable(text: str) -> str:
    """`text` as a strict-mode install stores and returns it unchanged:
    characters outside the BMP become `[their name]` (a flag `[flag XX]`),
    skin tones and joiners around them go, a `<` that would start a tag
    becomes `‹`, `[file:` becomes `[file :`, and control characters go."""
    out: list[str] = []
    characters = list(text)
    index = 0
    replaced_last = False
    while index < len(characters):
        char = characters[index]
        code = ord(char)
        if code > _BMP_END or 0xD800 <= code <= 0xDFFF:
            name, index = _replacement(characters, index)
            if name:
                out.append(name)
            replaced_last = True
            continue
        if char in _JOINERS and (replaced_last or _next_is_astral(characters, index)):
            index += 1
            continue
        out.append(char)
        replaced_last = False
        index += 1
    result = "".join(out)
    result = _CONTROL.sub("", result)
    result = _TAG_START.sub("‹", result)
    return _FILE_MARK.sub(r"[\1 :", result)


def _replacement(characters: list[str], index: int) -> tuple[str, int]:
    """The name standing for the character at `index` and the next index."""
    code = ord(characters[index])
    if 0xD800 <= code <= 0xDFFF:  # a lone surrogate: not text at all
        return "\ufffd", index + 1
    if _REGIONAL_A <= code <= _REGIONAL_Z:
        following = ord(characters[index + 1]) if index + 1 < len(characters) else 0
        if _REGIONAL_A <= following <= _REGIONAL_Z:
            letters = chr(code - _REGIONAL_A + 65) + chr(following - _REGIONAL_A + 65)
            return f"[flag {letters}]", index + 2
    if code in _SKIN_TONES or code in _TAGS:
        return "", index + 1
    name = unicodedata.name(characters[index], "")
    return (f"[{name.lower()}]" if name else f"[U+{code:04X}]"), index + 1


def _next_is_astral(characters: list[str], index: int) -> bool:
    return index + 1 < len(characters) and ord(characters[index + 1]) > _BMP_END


def split_for_comments(text: str, limit: int) -> list[str]:
    """`text` cut into pieces of at most `limit` characters, in order, at a
    paragraph, line, sentence or word boundary where one is near the end of
    the window. Joining the pieces gives `text` back."""
    if limit < 1:
        raise ValueError("limit must be positive")
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = _cut_point(rest, limit)
        pieces.append(rest[:cut])
        rest = rest[cut:]
    if rest or not pieces:
        pieces.append(rest)
    return pieces


def _cut_point(text: str, limit: int) -> int:
    window = text[:limit]
    # Prefer a boundary in the last third of the window; else cut hard.
    earliest = limit * 2 // 3
    for separator in ("\n\n", "\n", ". ", " "):
        found = window.rfind(separator, earliest)
        if found != -1:
            return found + len(separator)
    return limit


LIST_CUT_BYTES = 150  # ticket_list's cut: cutstr_api($msg, 150)


def list_cut(text: str) -> bytes:
    """The bytes `ticket_list` shows of a ticket's text: the first line of
    PHP's `wordwrap($text, 150, '<br>', true)`, up to the first `<br>`. The
    line ends at the last ASCII space (after byte 0) when there is one within
    the first 150 bytes, else exactly at byte 150, whatever it splits."""
    raw = text.encode()
    line = raw.split(b"<br>", 1)[0]
    if len(line) <= LIST_CUT_BYTES:
        return line
    space = line.rfind(b" ", 1, LIST_CUT_BYTES + 1)
    return line[:space] if space > 0 else line[:LIST_CUT_BYTES]


def lists_cleanly(text: str) -> bool:
    """Whether `ticket_list` can encode this ticket text (its cut is UTF-8)."""
    try:
        list_cut(text).decode()
    except UnicodeDecodeError:
        return False
    return True


# Put in front of a ticket the bridge writes when nothing else can carry the
# ASCII space the list cut needs.
LIST_SAFE_MARK = "Telegram: "


def list_safe_head(head: str, body: str) -> str:
    """`head` (what the bridge writes above the customer's `body`) with an
    ASCII space where `ticket_list`'s cut needs one, so the ticket never
    empties the list: at the end of the head's first line when that is
    within 150 bytes, else inside it at the last character boundary before
    byte 150; `LIST_SAFE_MARK` in front when the head cannot carry it."""
    if lists_cleanly(head + body):
        return head
    first, newline, rest = head.partition("\n")
    room = LIST_CUT_BYTES - 1
    if len(first.rstrip().encode()) <= room:
        first = first.rstrip() + " "
    else:
        used = index = 0
        for index, char in enumerate(first):  # noqa: B007 - the index is the result
            used += len(char.encode())
            if used > room:
                break
        first = first[:index] + " " + first[index:]
    candidate = first + newline + rest
    if candidate.strip() and lists_cleanly(candidate + body):
        return candidate
    return LIST_SAFE_MARK + head


def clip(text: str, length: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= length else text[: length - 1] + "…"
