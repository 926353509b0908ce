"""A Telegram Bot API server of our own: the end-to-end tests' fake, and the sandbox
Telegram of ``deskbridge demo`` (bot.sandbox.demo).

The bot under test talks to it through aiogram's real ``AiohttpSession`` over real HTTP
on 127.0.0.1, so everything between the bot's handlers and the socket is exercised.
Tests build a small world (users, forum supergroups, topics), inject updates as if users
acted, and assert on what the bot produced (``server.sent``) or called (``server.requests``).

Faithful to the real Bot API:

* URLs (``/bot<token>/<method>``, ``/file/bot<token>/<path>``), case-insensitive method
  names, JSON / urlencoded / multipart bodies with JSON-typed fields sent as strings.
* Response envelopes and the real error codes and descriptions (401, 404, 400 "Bad Request:
  ...", 403 "Forbidden: ...", 409 "Conflict: ...", 429 with ``parameters.retry_after``).
* Result objects that aiogram's pydantic models accept, including required-but-obscure
  fields (``ChatFullInfo.accepted_gift_types``, all ChatMemberAdministrator rights).
* getUpdates: offsets confirm updates, unconfirmed updates are handed out again, long
  polling, one poller at a time (the older one gets 409), ``allowed_updates`` applied to
  updates created after the call (updates of opt-in types are not produced by default).
* Message ids numbered per chat; forum topics whose id is the id of the
  ``forum_topic_created`` service message; topic messages carry ``message_thread_id``,
  ``is_topic_message`` and a ``reply_to_message`` pointing at the topic's first message;
  a reply lands in the topic of the message it replies to.
* Text limits counted in UTF-16 code units; HTML parse mode checked the way tdlib does
  (the tag set, ``Unsupported start tag "x" at byte offset N`` and friends; a ``&`` that
  does not start a known entity is kept literally, as Telegram does).
* editMessageText without ``reply_markup`` removes the inline keyboard, as Telegram does;
  "message is not modified" when nothing changes.
* Deleting a topic deletes its messages.

Simplified or left out:

* Markdown/MarkdownV2 are not parsed: such text is stored verbatim with no entities.
* One PhotoSize per photo; widths, heights and durations are fixed placeholders.
* No webhooks are ever called, inline messages (``inline_message_id``) are not supported,
  private chats ignore ``message_thread_id``, no slow mode or per-method flood limits
  other than the opt-in ``enforce_limits``; file type mismatches (a document's file_id
  sent as a photo) are accepted.
* Test helpers that act "as an admin" (``close_topic``, ``delete_topic``) change state
  without producing service-message updates; use ``user_sends(..., forum_topic_closed={})``
  when a test needs one.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import inspect
import itertools
import json
import math
import mimetypes
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import PurePosixPath
from types import EllipsisType
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web

JsonDict = dict[str, Any]
T = TypeVar("T")

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_DOWNLOAD_SIZE = 20 * 1024 * 1024
MAX_UPLOAD_SIZE = 50 * 1024 * 1024
MAX_ALBUM_SIZE = 10
DEFAULT_TOPIC_COLOR = 7322096

NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup"
    " are exactly the same as a current content and reply markup of the message"
)
BLOCKED = "Forbidden: bot was blocked by the user"
QUERY_INVALID = "query is too old and response timeout expired or query ID is invalid"
POLL_CONFLICT = (
    "Conflict: terminated by other getUpdates request;"
    " make sure that only one bot instance is running"
)
WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active;"
    " use deleteWebhook to delete the webhook first"
)

# Update types Telegram only produces when asked for explicitly in allowed_updates.
OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

# Parameters whose values are JSON documents; multipart/urlencoded bodies carry them as strings.
JSON_FIELDS = frozenset(
    {
        "allowed_updates", "button", "caption_entities", "commands", "entities",
        "link_preview_options", "media", "menu_button", "reaction", "reply_markup",
        "reply_parameters", "results", "scope",
    }
)  # fmt: skip

# What InputMedia of sendMediaGroup may carry.
MEDIA_GROUP_KINDS = frozenset({"photo", "video", "document", "audio"})

# Content fields of a message, in the order used to decide its media type.
MEDIA_KINDS = ("animation", "photo", "video", "voice", "audio", "document", "sticker", "video_note")

# sendX method -> kind of file, which is also the name of the parameter carrying it
MEDIA_METHODS = {
    "sendPhoto": "photo",
    "sendDocument": "document",
    "sendVoice": "voice",
    "sendVideo": "video",
    "sendAudio": "audio",
    "sendAnimation": "animation",
}

# kind -> (folder, extension) of the file_path Telegram hands out for downloads
FILE_LOCATIONS = {
    "photo": ("photos", ".jpg"),
    "document": ("documents", ""),
    "voice": ("voice", ".oga"),
    "video": ("videos", ".mp4"),
    "audio": ("music", ".mp3"),
    "animation": ("animations", ".mp4"),
    "sticker": ("stickers", ".webp"),
}

ADMIN_RIGHTS = (
    "can_manage_chat", "can_delete_messages", "can_manage_video_chats", "can_restrict_members",
    "can_promote_members", "can_change_info", "can_invite_users", "can_post_stories",
    "can_edit_stories", "can_delete_stories", "can_send_welcome_messages", "can_pin_messages",
    "can_manage_topics",
)  # fmt: skip

FAKE_JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00fake-jpeg"
FAKE_PDF = b"%PDF-1.4\n% fake document\n"
FAKE_OGG = b"OggS\x00fake-voice"
FAKE_MP4 = b"\x00\x00\x00\x18ftypmp42fake-video"


class ApiError(Exception):
    """An error answer of the Bot API; raised by method handlers."""

    def __init__(self, error_code: int, description: str, *, retry_after: int | None = None,
                 migrate_to_chat_id: int | None = None):
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after
        self.migrate_to_chat_id = migrate_to_chat_id

    def response(self) -> web.Response:
        body: JsonDict = {
            "ok": False,
            "error_code": self.error_code,
            "description": self.description,
        }
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        if self.migrate_to_chat_id is not None:
            body["parameters"] = {"migrate_to_chat_id": self.migrate_to_chat_id}
        return web.json_response(body, status=self.error_code)


def bad_request(reason: str) -> ApiError:
    return ApiError(400, f"Bad Request: {reason}")


def too_many_requests(retry_after: int) -> ApiError:
    return ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)


def utf16_len(text: str) -> int:
    """Length as Telegram counts it: in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


# --------------------------------------------------------------------------- HTML parse mode


class HtmlParseError(ValueError):
    """The reason part of "Bad Request: can't parse entities: <reason>"."""


HTML_ENTITY_TYPES = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic",
    "u": "underline", "ins": "underline", "s": "strikethrough", "strike": "strikethrough",
    "del": "strikethrough", "a": "text_link", "code": "code", "pre": "pre",
    "blockquote": "blockquote", "tg-spoiler": "spoiler", "span": "spoiler",
    "tg-emoji": "custom_emoji",
}  # fmt: skip
NAMED_CHARACTERS = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
CHARACTER_REFERENCE = re.compile(r"&(?:#x([0-9a-fA-F]{1,8})|#([0-9]{1,8})|([a-zA-Z]+));?")
PLAIN_RUN = re.compile(r"[^<&]+")
TAG_NAME = re.compile(r"[^\s>]*")
END_TAG = re.compile(r"</([^\s>]*)\s*>")
ATTRIBUTE = re.compile(
    r"""(?P<name>[^\s=>]+)"""
    r"""(?:\s*=\s*(?:"(?P<double>[^"]*)"?|'(?P<single>[^']*)'?|(?P<bare>[\w.\-]+)))?"""
)


def decode_character_reference(match: re.Match[str]) -> str | None:
    hex_code, decimal_code, name = match.groups()
    if name is not None:
        return NAMED_CHARACTERS.get(name)
    code = int(hex_code, 16) if hex_code else int(decimal_code)
    return chr(code) if 0 < code < 0x10FFFF else None


def unescape_attribute(value: str) -> str:
    return CHARACTER_REFERENCE.sub(lambda m: decode_character_reference(m) or m.group(), value)


@dataclass
class _OpenTag:
    name: str
    attributes: dict[str, str]
    start: int  # UTF-16 offset in the plain text
    language: str | None = None


class _HtmlParser:
    """Telegram's (tdlib's) HTML dialect: a fixed tag set, strict nesting, four named entities."""

    def __init__(self, source: str):
        self.source = source
        self.pos = 0
        self.chunks: list[str] = []
        self.offset = 0
        self.open_tags: list[_OpenTag] = []
        self.entities: list[JsonDict] = []

    def parse(self) -> tuple[str, list[JsonDict]]:
        while self.pos < len(self.source):
            if self.source[self.pos] == "<":
                self._tag()
            elif self.source[self.pos] == "&":
                self._character_reference()
            else:
                run = PLAIN_RUN.match(self.source, self.pos)
                assert run is not None
                self._emit(run.group())
                self.pos = run.end()
        if self.open_tags:
            tag = self.open_tags[-1].name
            raise HtmlParseError(f'Can\'t find end tag corresponding to start tag "{tag}"')
        self.entities.sort(key=lambda entity: (entity["offset"], -entity["length"]))
        return "".join(self.chunks), self.entities

    def _emit(self, text: str) -> None:
        self.chunks.append(text)
        self.offset += utf16_len(text)

    def _at(self, begin: int) -> str:
        return f"at byte offset {len(self.source[:begin].encode())}"

    def _character_reference(self) -> None:
        match = CHARACTER_REFERENCE.match(self.source, self.pos)
        char = decode_character_reference(match) if match else None
        if match and char:
            self._emit(char)
            self.pos = match.end()
        else:
            self._emit("&")
            self.pos += 1

    def _tag(self) -> None:
        if self.source.startswith("</", self.pos):
            self._end_tag()
        else:
            self._start_tag()

    def _start_tag(self) -> None:
        begin = self.pos
        name_match = TAG_NAME.match(self.source, begin + 1)
        assert name_match is not None
        name = name_match.group().lower()
        self.pos = name_match.end()
        if self.pos >= len(self.source):
            raise HtmlParseError(f"Unclosed start tag {self._at(begin)}")
        if name not in HTML_ENTITY_TYPES:
            raise HtmlParseError(f'Unsupported start tag "{name}" {self._at(begin)}')
        attributes = self._attributes(name, begin)
        if name == "span" and attributes.get("class") != "tg-spoiler":
            raise HtmlParseError(f'Tag "span" must have class "tg-spoiler" {self._at(begin)}')
        self.open_tags.append(_OpenTag(name, attributes, self.offset))

    def _attributes(self, tag: str, begin: int) -> dict[str, str]:
        attributes: dict[str, str] = {}
        while True:
            while self.pos < len(self.source) and self.source[self.pos].isspace():
                self.pos += 1
            if self.pos >= len(self.source):
                raise HtmlParseError(f"Unclosed start tag {self._at(begin)}")
            if self.source[self.pos] == ">":
                self.pos += 1
                return attributes
            match = ATTRIBUTE.match(self.source, self.pos)
            if match is None:
                raise HtmlParseError(f'Empty attribute name in the tag "{tag}" {self._at(begin)}')
            value = match.group("double") or match.group("single") or match.group("bare") or ""
            attributes[match.group("name").lower()] = unescape_attribute(value)
            self.pos = match.end()
            following = self.source[self.pos : self.pos + 1]
            if match.group("bare") and following and not (following.isspace() or following == ">"):
                raise HtmlParseError(f"Unexpected end of name token {self._at(self.pos)}")

    def _end_tag(self) -> None:
        begin = self.pos
        if not self.open_tags:
            raise HtmlParseError(f"Unexpected end tag {self._at(begin)}")
        match = END_TAG.match(self.source, begin)
        if match is None:
            raise HtmlParseError(f"Unclosed end tag {self._at(begin)}")
        name = match.group(1).lower()
        tag = self.open_tags.pop()
        if name and name != tag.name:
            raise HtmlParseError(
                f'Unmatched end tag {self._at(begin)}, expected "</{tag.name}>", found "</{name}>"'
            )
        self.pos = match.end()
        self._close(tag)

    def _close(self, tag: _OpenTag) -> None:
        if tag.name == "code" and self.open_tags and self.open_tags[-1].name == "pre":
            # <pre><code class="language-x"> is one pre entity with a language
            css_class = tag.attributes.get("class", "")
            if css_class.startswith("language-"):
                self.open_tags[-1].language = css_class.removeprefix("language-")
            return
        length = self.offset - tag.start
        if length > 0 and (entity := self._entity(tag)):
            self.entities.append({**entity, "offset": tag.start, "length": length})

    @staticmethod
    def _entity(tag: _OpenTag) -> JsonDict | None:
        entity: JsonDict = {"type": HTML_ENTITY_TYPES[tag.name]}
        if tag.name == "a":
            if not tag.attributes.get("href"):
                return None
            entity["url"] = tag.attributes["href"]
        elif tag.name == "tg-emoji":
            if not tag.attributes.get("emoji-id"):
                return None
            entity["custom_emoji_id"] = tag.attributes["emoji-id"]
        elif tag.name == "pre" and tag.language:
            entity["language"] = tag.language
        elif tag.name == "blockquote" and "expandable" in tag.attributes:
            entity["type"] = "expandable_blockquote"
        return entity


def parse_html(source: str) -> tuple[str, list[JsonDict]]:
    """Plain text and MessageEntity dicts of an HTML-formatted text, or HtmlParseError."""
    return _HtmlParser(source).parse()


# --------------------------------------------------------------------------- request parameters


@dataclass
class _Upload:
    filename: str | None
    content_type: str
    data: bytes


class _Params:
    """The parameters of one API call, normalised from whichever body encoding was used."""

    def __init__(self, method: str, values: Mapping[str, Any], uploads: dict[str, _Upload]):
        self.method = method
        self.values = {name: self._decode(name, value) for name, value in values.items()}
        self.uploads = uploads

    @staticmethod
    def _decode(name: str, value: Any) -> Any:
        if name not in JSON_FIELDS or not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError:
            raise bad_request(f"can't parse {name} JSON object") from None

    def get(self, name: str, default: Any = None) -> Any:
        value = self.values.get(name)
        return default if value is None else value

    def text(self, name: str) -> str | None:
        value = self.values.get(name)
        return None if value is None else str(value)

    def integer(self, name: str) -> int | None:
        value = self.values.get(name)
        if value is None or value == "":
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            raise bad_request(f"invalid {name} specified") from None

    def flag(self, name: str) -> bool:
        return self.values.get(name) in (True, "true", "True", "1", 1)

    def file_reference(self, name: str) -> Any:
        """The value of a file parameter; a multipart part named like the parameter counts."""
        if name in self.values:
            return self.values[name]
        return f"attach://{name}" if name in self.uploads else None


async def _read_params(request: web.Request, method: str) -> _Params:
    values: dict[str, Any] = dict(request.query)
    uploads: dict[str, _Upload] = {}
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise bad_request("can't parse JSON object") from None
            if not isinstance(body, dict):
                raise bad_request("JSON object expected")
            values.update(body)
        else:
            for name, value in (await request.post()).items():
                if isinstance(value, web.FileField):
                    uploads[name] = _Upload(value.filename, value.content_type, value.file.read())
                else:
                    values[name] = value
    return _Params(method, values, uploads)


# --------------------------------------------------------------------------- world model


@dataclass
class _Chat:
    id: int
    type: str  # "private" | "supergroup"
    title: str | None = None
    user: JsonDict | None = None  # the other side of a private chat
    is_forum: bool = False
    bot_can_manage_topics: bool = False
    # The bot's membership: "administrator" (rights from bot_can_manage_topics and
    # bot_rights, which override the default of every right), "member", "left"
    # or "kicked" (the last two: removed; sends answer 403).
    bot_status: str = "administrator"
    bot_rights: dict[str, bool] = field(default_factory=dict)
    migrated_to: int | None = None  # upgraded to a supergroup with this id
    owner_id: int | None = None
    admins: set[int] = field(default_factory=set)
    members: set[int] = field(default_factory=set)
    messages: dict[int, JsonDict] = field(default_factory=dict)
    last_message_id: int = 0

    def next_message_id(self) -> int:
        self.last_message_id += 1
        return self.last_message_id

    def as_message_chat(self) -> JsonDict:
        if self.user is not None:
            names = {key: self.user[key] for key in ("first_name", "username") if key in self.user}
            return {"id": self.id, "type": "private"} | names
        chat: JsonDict = {"id": self.id, "type": self.type, "title": self.title}
        if self.is_forum:
            chat["is_forum"] = True
        return chat


@dataclass
class _StoredFile:
    file_id: str
    file_unique_id: str
    kind: str
    data: bytes
    size: int
    path: str
    file_name: str | None = None
    mime_type: str | None = None

    def media_content(self, duration: int = 1) -> JsonDict:
        """The message fields describing this file, as Telegram would put them in a Message."""
        base: JsonDict = {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": self.size,
        }
        named = base | {
            key: value
            for key, value in (("file_name", self.file_name), ("mime_type", self.mime_type))
            if value
        }
        video = {"width": 1280, "height": 720, "duration": duration}
        match self.kind:
            case "photo":
                return {"photo": [base | {"width": 1280, "height": 960}]}
            case "voice":
                return {"voice": base | {"duration": duration, "mime_type": "audio/ogg"}}
            case "video":
                return {"video": named | video}
            case "audio":
                return {"audio": named | {"duration": duration}}
            case "animation":
                return {"animation": named | video, "document": named}
            case _:
                return {self.kind: named}


@dataclass
class _Target:
    """Where a bot message goes, after the checks Telegram makes before sending."""

    chat: _Chat
    thread_id: int | None
    reply_to: JsonDict | None


@dataclass
class _Formatted:
    """A text or caption as Telegram stores it, and how the bot wrote it."""

    text: str
    entities: list[JsonDict]
    html: str | None  # the raw text, when it was sent with parse_mode HTML
    parse_mode: str | None

    @classmethod
    def parse(
        cls,
        raw: Any,
        parse_mode: str | None,
        entities: list[JsonDict] | None,
        *,
        limit: int,
        too_long: str,
    ) -> _Formatted:
        raw = "" if raw is None else str(raw)
        html = parse_mode is not None and parse_mode.lower() == "html"
        text = raw
        if html:
            try:
                text, entities = parse_html(raw)
            except HtmlParseError as error:
                raise bad_request(f"can't parse entities: {error}") from None
        if utf16_len(text) > limit:
            raise bad_request(too_long)
        return cls(text, entities or [], raw if html else None, parse_mode)

    def fields(self, text_field: str, entities_field: str) -> JsonDict:
        """The message fields holding this text; None marks a field that is absent."""
        return {text_field: self.text or None, entities_field: self.entities or None}


def message_text(values: Mapping[str, Any]) -> _Formatted:
    formatted = _Formatted.parse(
        values.get("text"),
        values.get("parse_mode"),
        values.get("entities"),
        limit=MAX_TEXT_LENGTH,
        too_long="message is too long",
    )
    if not formatted.text.strip():
        raise bad_request("message text is empty")
    return formatted


def caption(values: Mapping[str, Any]) -> _Formatted:
    return _Formatted.parse(
        values.get("caption"),
        values.get("parse_mode"),
        values.get("caption_entities"),
        limit=MAX_CAPTION_LENGTH,
        too_long="message caption is too long",
    )


def present(fields: JsonDict) -> JsonDict:
    return {key: value for key, value in fields.items() if value is not None}


@dataclass
class _Fault:
    method: str
    error_code: int
    description: str
    retry_after: int | None
    times: int
    chat_id: int | str | None

    def matches(self, params: _Params) -> bool:
        if params.method.lower() != self.method.lower():
            return False
        return self.chat_id is None or str(params.get("chat_id")) == str(self.chat_id)

    def response(self) -> web.Response:
        if self.error_code == HTTPStatus.BAD_GATEWAY:
            return web.Response(status=502, text="Bad Gateway")  # a proxy's answer, not JSON
        return ApiError(self.error_code, self.description, retry_after=self.retry_after).response()


class _TokenBucket:
    def __init__(self, capacity: float, per_second: float):
        self.capacity = capacity
        self.per_second = per_second
        self.tokens = capacity
        self.updated = time.monotonic()

    def wait_time(self, now: float) -> float:
        """Seconds until one token is available (0 if one is available now)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        return max(0.0, (1 - self.tokens) / self.per_second)

    def take(self) -> None:
        self.tokens -= 1


class _RateLimiter:
    """Telegram's documented broadcast limits: ~1 msg/s per private chat (small bursts are
    tolerated), 20 msg/min per group, 30 msg/s overall."""

    def __init__(self) -> None:
        self.overall = _TokenBucket(30, 30)
        self.per_chat: dict[int, _TokenBucket] = {}
        self.per_group_pace: dict[int, _TokenBucket] = {}

    def retry_after(self, chat: _Chat) -> int | None:
        if chat.id not in self.per_chat:
            private = chat.type == "private"
            self.per_chat[chat.id] = _TokenBucket(3, 1) if private else _TokenBucket(20, 20 / 60)
            if not private:  # about one a second in any one chat, groups included
                self.per_group_pace[chat.id] = _TokenBucket(3, 1)
        buckets = [self.overall, self.per_chat[chat.id]]
        if chat.id in self.per_group_pace:
            buckets.append(self.per_group_pace[chat.id])
        now = time.monotonic()
        wait = max(bucket.wait_time(now) for bucket in buckets)
        if wait > 0:
            return max(1, math.ceil(wait))
        for bucket in buckets:
            bucket.take()
        return None


# --------------------------------------------------------------------------- the server

Handler = Callable[["FakeTelegramServer", _Params], Any]
_API: dict[str, tuple[str, Handler]] = {}


def api_method(name: str) -> Callable[[Handler], Handler]:
    """Register a handler for a Bot API method (matched case-insensitively)."""

    def register(handler: Handler) -> Handler:
        _API[name.lower()] = (name, handler)
        return handler

    return register


def inline_buttons(markup: JsonDict | None) -> list[JsonDict]:
    if not markup or "inline_keyboard" not in markup:
        return []
    return [button for row in markup["inline_keyboard"] for button in row]


def media_file(message: JsonDict) -> JsonDict | None:
    """The main file object of a media message (the biggest PhotoSize for photos)."""
    for kind in MEDIA_KINDS:
        if kind in message:
            value = message[kind]
            return value[-1] if isinstance(value, list) else value
    return None


def media_type(message: JsonDict) -> str | None:
    return next((kind for kind in MEDIA_KINDS if kind in message), None)


def without_reply(message: JsonDict) -> JsonDict:
    """A message as nested in reply_to_message: Telegram does not nest replies further."""
    return {key: value for key, value in message.items() if key != "reply_to_message"}


def command_entities(text: str) -> list[JsonDict]:
    """The bot_command entity a Telegram client attaches to "/command ..." texts."""
    match = re.match(r"/[A-Za-z0-9_]+(?:@\w+)?", text)
    return [{"type": "bot_command", "offset": 0, "length": match.end()}] if match else []


# Message fields that are not content: copyMessage and forwardMessage do not carry them over.
MESSAGE_META_FIELDS = frozenset(
    {
        "message_id", "date", "chat", "from", "message_thread_id", "is_topic_message",
        "reply_to_message", "edit_date", "media_group_id", "reply_markup", "forward_origin",
    }
)  # fmt: skip


class FakeTelegramServer:
    """A Bot API server for one bot, with a mutable world and recording of everything."""

    def __init__(self, token: str = "123456:TEST"):
        self.token = token
        self.bot_id = int(token.split(":")[0])
        self.bot_user: JsonDict = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "Deskbridge",
            "username": "deskbridge_test_bot",
        }
        self.users: dict[int, JsonDict] = {}
        self.chats: dict[int, _Chat] = {}
        self.topics: dict[int, dict[int, JsonDict]] = {}
        self.files: dict[str, _StoredFile] = {}
        self.blocked: set[int] = set()

        self.sent: list[JsonDict] = []
        self.requests: list[tuple[str, JsonDict]] = []
        self.callback_answers: dict[str, JsonDict] = {}
        self.inline_answers: dict[str, JsonDict] = {}
        self.inline_queries: dict[str, JsonDict] = {}
        self.reactions: dict[tuple[int, int], list[JsonDict]] = {}
        self.pinned: dict[int, list[int]] = {}  # chat id → pinned message ids, oldest first
        self.commands: dict[tuple[str, str], list[JsonDict]] = {}
        self.menu_buttons: dict[int | None, JsonDict | None] = {}
        self.webhook_url = ""
        self.inline_mode = True  # getMe's supports_inline_queries (BotFather's /setinline)

        self.latency = 0.0
        self.enforce_limits = False
        self.limit_429s = 0
        # Called with one event dict per change of the world, synchronously, in the server's
        # event loop (the demo page's live stream): "message", "edited", "deleted", "topic",
        # "callback_answer" and "inline_answer" (see ``_emit``'s callers for the fields).
        self.observers: list[Callable[[JsonDict], None]] = []

        self._records: dict[tuple[int, int], JsonDict] = {}
        self._updates: list[JsonDict] = []
        self._update_ids = itertools.count(1)
        self._allowed_updates: frozenset[str] | None = None
        self._poll_generation = 0
        self._open_queries: set[str] = set()
        self._query_ids = itertools.count(4_000_000_000_000_000_001)
        self._media_group_ids = itertools.count(13_000_000_000_000_001)
        self._file_numbers = itertools.count(1)
        self._webhook_error: JsonDict = {}
        self._faults: list[_Fault] = []
        self._odd_answers: dict[str, int] = {}
        self._limiter = _RateLimiter()
        self._changed = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_UPLOAD_SIZE)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        # handler_cancellation: a client vanishing mid long-poll just cancels its handler
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        self._closing = False
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self._closing = True  # pending long polls return at once
        self._notify()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegramServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ building the world

    def add_user(
        self,
        user_id: int,
        first_name: str,
        username: str | None = None,
        language_code: str = "en",
    ) -> JsonDict:
        """A user who has started the bot: also creates the private chat (id == user_id)."""
        user: JsonDict = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        user["language_code"] = language_code
        self.users[user_id] = user
        self.chats[user_id] = _Chat(id=user_id, type="private", user=user)
        return user

    def add_supergroup(
        self,
        chat_id: int,
        title: str = "Agents",
        is_forum: bool = True,
        members: Iterable[int] = (),
        bot_can_manage_topics: bool = True,
        *,
        owner_id: int | None = None,
        admins: Iterable[int] = (),
    ) -> JsonDict:
        """A supergroup where the bot is an administrator; returns its Chat dict."""
        chat = _Chat(
            id=chat_id,
            type="supergroup",
            title=title,
            is_forum=is_forum,
            bot_can_manage_topics=bot_can_manage_topics,
            owner_id=owner_id,
            admins=set(admins),
        )
        chat.members = {*members, *chat.admins, *([owner_id] if owner_id else [])}
        self.chats[chat_id] = chat
        self.topics[chat_id] = {}
        return chat.as_message_chat()

    def set_forum(self, chat_id: int, is_forum: bool) -> None:
        """An admin switches topics on or off."""
        self.chats[chat_id].is_forum = is_forum

    def migrate_chat(self, chat_id: int, new_chat_id: int) -> None:
        """Telegram upgrades the group: it gets a new id; the old one answers
        400 with `migrate_to_chat_id`."""
        old = self.chats[chat_id]
        new = copy.deepcopy(old)
        new.id = new_chat_id
        new.migrated_to = None
        old.migrated_to = new_chat_id
        self.chats[new_chat_id] = new
        self.topics[new_chat_id] = copy.deepcopy(self.topics.get(chat_id, {}))

    def add_member(self, chat_id: int, user_id: int) -> None:
        self.chats[chat_id].members.add(user_id)

    def remove_member(self, chat_id: int, user_id: int) -> None:
        self.chats[chat_id].members.discard(user_id)

    def close_topic(self, chat_id: int, thread_id: int) -> None:
        """Close a topic as an admin would."""
        self.topics[chat_id][thread_id]["closed"] = True
        self._topic_changed(chat_id, thread_id)

    def reopen_topic(self, chat_id: int, thread_id: int) -> None:
        """Reopen a topic as an admin would."""
        self.topics[chat_id][thread_id]["closed"] = False
        self._topic_changed(chat_id, thread_id)

    def delete_topic(self, chat_id: int, thread_id: int) -> None:
        """Delete a topic and all of its messages as an admin would."""
        chat = self.chats[chat_id]
        self.topics[chat_id][thread_id]["deleted"] = True
        for message in list(chat.messages.values()):
            if message.get("message_thread_id") == thread_id:
                self._forget_message(chat, message["message_id"])
        self._topic_changed(chat_id, thread_id)

    def block_user(self, user_id: int) -> None:
        self.blocked.add(user_id)

    def unblock_user(self, user_id: int) -> None:
        self.blocked.discard(user_id)

    def set_webhook_error(self, message: str, date: int | None = None) -> None:
        """What getWebhookInfo reports as the last delivery error."""
        self._webhook_error = {
            "last_error_date": date or int(time.time()),
            "last_error_message": message,
        }

    # ------------------------------------------------------------------ users acting (updates)

    def push_update(self, update: JsonDict) -> JsonDict:
        """Queue a snapshot of a raw update and return it with its assigned update_id.

        Like Telegram, an update of a type the bot's allowed_updates exclude is not queued.
        """
        update = copy.deepcopy(update)
        update["update_id"] = next(self._update_ids)
        if self._is_allowed(next(key for key in update if key != "update_id")):
            self._updates.append(update)
        self._notify()
        return update

    def user_sends(
        self,
        user_id: int,
        chat_id: int,
        *,
        thread_id: int | None = None,
        reply_to: int | None = None,
        **message_fields: Any,
    ) -> JsonDict:
        """A message with arbitrary content (sticker=..., location=..., poll=...)."""
        chat = self._chat_of_user_action(user_id, chat_id)
        reply = self._stored_message(chat, reply_to) if reply_to is not None else None
        thread_id = self._user_thread(chat, thread_id, reply)
        message = self._store_message(chat, self.users[user_id], thread_id, reply, message_fields)
        self.push_update({"message": message})
        return message

    def user_sends_text(
        self,
        user_id: int,
        chat_id: int,
        text: str,
        *,
        thread_id: int | None = None,
        reply_to: int | None = None,
        entities: list[JsonDict] | None = None,
    ) -> JsonDict:
        """Entities default to what a Telegram client attaches (a leading /command)."""
        if entities is None:
            entities = command_entities(text)
        content: JsonDict = {"text": text}
        if entities:
            content["entities"] = entities
        return self.user_sends(user_id, chat_id, thread_id=thread_id, reply_to=reply_to, **content)

    def user_sends_photo(
        self,
        user_id: int,
        chat_id: int,
        *,
        caption: str | None = None,
        data: bytes = FAKE_JPEG,
        thread_id: int | None = None,
        reply_to: int | None = None,
        media_group_id: str | None = None,
    ) -> JsonDict:
        stored = self._new_file("photo", data)
        return self._user_sends_file(
            user_id, chat_id, stored, caption, thread_id, reply_to, media_group_id
        )

    def user_sends_document(
        self,
        user_id: int,
        chat_id: int,
        *,
        file_name: str = "a.pdf",
        mime_type: str | None = None,
        data: bytes = FAKE_PDF,
        size: int | None = None,
        caption: str | None = None,
        thread_id: int | None = None,
        reply_to: int | None = None,
        media_group_id: str | None = None,
    ) -> JsonDict:
        """``size`` fakes the reported file size (e.g. 25 MB) without holding the bytes."""
        stored = self._new_file("document", data, file_name, mime_type, size=size)
        return self._user_sends_file(
            user_id, chat_id, stored, caption, thread_id, reply_to, media_group_id
        )

    def user_sends_voice(
        self,
        user_id: int,
        chat_id: int,
        *,
        data: bytes = FAKE_OGG,
        duration: int = 3,
        caption: str | None = None,
        thread_id: int | None = None,
        reply_to: int | None = None,
    ) -> JsonDict:
        stored = self._new_file("voice", data)
        return self._user_sends_file(
            user_id, chat_id, stored, caption, thread_id, reply_to, None, duration
        )

    def user_sends_video(
        self,
        user_id: int,
        chat_id: int,
        *,
        data: bytes = FAKE_MP4,
        duration: int = 5,
        caption: str | None = None,
        thread_id: int | None = None,
        reply_to: int | None = None,
        media_group_id: str | None = None,
    ) -> JsonDict:
        stored = self._new_file("video", data, "video.mp4", "video/mp4")
        return self._user_sends_file(
            user_id, chat_id, stored, caption, thread_id, reply_to, media_group_id, duration
        )

    def user_sends_album(
        self,
        user_id: int,
        chat_id: int,
        items: Iterable[tuple[Any, ...]],
        caption: str | None = None,
        *,
        thread_id: int | None = None,
    ) -> list[JsonDict]:
        """One update per item, sharing a media_group_id; the caption goes on the first item.

        Items: ``("photo", data)``, ``("video", data)``, ``("document", data, "name.pdf")``.
        """
        group_id = str(next(self._media_group_ids))
        messages = []
        for index, (kind, data, *name) in enumerate(items):
            stored = self._new_file(kind, data, *name)
            item_caption = caption if index == 0 else None
            messages.append(
                self._user_sends_file(
                    user_id, chat_id, stored, item_caption, thread_id, None, group_id
                )
            )
        return messages

    def user_edits_text(
        self, user_id: int, chat_id: int, message_id: int, new_text: str
    ) -> JsonDict:
        chat = self._chat_of_user_action(user_id, chat_id)
        message = self._stored_message(chat, message_id)
        if message["from"]["id"] != user_id or "text" not in message:
            raise ValueError(f"user {user_id} cannot edit the text of message {message_id}")
        message["text"] = new_text
        message.pop("entities", None)
        if entities := command_entities(new_text):
            message["entities"] = entities
        message["edit_date"] = int(time.time())
        self._emit({"type": "edited", "message": message})
        self.push_update({"edited_message": message})
        return message

    def user_presses(self, user_id: int, message: JsonDict | tuple[int, int], data: str) -> str:
        """Press an inline button of a message (a Message dict or (chat_id, message_id)).

        The button must exist in the message's current keyboard, as Telegram only lets users
        press buttons it has shown. Returns the callback query id.
        """
        if isinstance(message, dict):
            chat_id, message_id = message["chat"]["id"], message["message_id"]
        else:
            chat_id, message_id = message
        chat = self._chat_of_user_action(user_id, chat_id)
        stored = self._stored_message(chat, message_id)
        buttons = inline_buttons(stored.get("reply_markup"))
        if not any(button.get("callback_data") == data for button in buttons):
            shown = [button.get("callback_data") for button in buttons]
            raise ValueError(f"message {message_id} has no button {data!r}; it has {shown}")
        query_id = self._open_query()
        query = {
            "id": query_id,
            "from": self.users[user_id],
            "message": stored,
            "chat_instance": str(abs(chat_id) * 7919),
            "data": data,
        }
        self.push_update({"callback_query": query})
        return query_id

    def user_sends_forged_callback(
        self, user_id: int, chat_id: int, message_id: int, data: str
    ) -> str:
        """A callback query whose data no button ever showed: what a modified client can send.

        Telegram delivers such queries as they are (it does not check the data against the
        keyboard), so the bot must not trust callback data. The message need not exist.
        """
        chat = self.chats[chat_id]
        stored = chat.messages.get(message_id) or {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": chat.as_message_chat(),
            "text": "…",
        }
        query_id = self._open_query()
        query = {
            "id": query_id,
            "from": self.users[user_id],
            "message": stored,
            "chat_instance": str(abs(chat_id) * 7919),
            "data": data,
        }
        self.push_update({"callback_query": query})
        return query_id

    def user_inline_query(
        self, user_id: int, query: str, offset: str = "", chat_type: str = "supergroup"
    ) -> JsonDict:
        inline_query = {
            "id": self._open_query(),
            "from": self._user(user_id),
            "query": query,
            "offset": offset,
            "chat_type": chat_type,
        }
        self.inline_queries[inline_query["id"]] = inline_query
        self.push_update({"inline_query": inline_query})
        return inline_query

    def user_sends_inline_result(
        self,
        user_id: int,
        chat_id: int,
        query_id: str,
        result_id: str,
        *,
        thread_id: int | None = None,
        reply_to: int | None = None,
        feedback: bool = True,
    ) -> JsonDict:
        """The user picks a result the bot answered an inline query with, in a chat.

        As Telegram clients do, the result's ``input_message_content`` is sent as the
        user's own message ``via_bot`` the bot. With inline feedback enabled (BotFather's
        /setinlinefeedback) a ``chosen_inline_result`` follows; like Telegram's, it names
        no chat (``inline_message_id`` only for a result that carries an inline keyboard).
        Only text results are supported.
        """
        answer = self.inline_answers.get(str(query_id))
        if answer is None:
            raise ValueError(f"inline query {query_id} was not answered")
        result = next((r for r in answer["results"] if r.get("id") == result_id), None)
        if result is None:
            raise ValueError(f"inline query {query_id} has no result {result_id!r}")
        content = result.get("input_message_content") or {}
        if "message_text" not in content:
            raise ValueError("only results with a text message content are supported")
        formatted = message_text(
            {
                "text": content["message_text"],
                "parse_mode": content.get("parse_mode"),
                "entities": content.get("entities"),
            }
        )
        fields = present(formatted.fields("text", "entities"))
        markup = result.get("reply_markup")
        if inline_buttons(markup):
            fields["reply_markup"] = markup
        message = self.user_sends(
            user_id, chat_id, thread_id=thread_id, reply_to=reply_to, via_bot=self.bot_user,
            **fields,
        )
        if feedback:
            chosen: JsonDict = {
                "result_id": result_id,
                "from": self._user(user_id),
                "query": self.inline_queries[str(query_id)]["query"],
            }
            if inline_buttons(markup):
                chosen["inline_message_id"] = f"AgAAA{chat_id}_{message['message_id']}"
            self.push_update({"chosen_inline_result": chosen})
        return message

    def user_chooses_inline_result(self, user_id: int, result_id: str, query: str) -> JsonDict:
        chosen = {"result_id": result_id, "from": self._user(user_id), "query": query}
        self.push_update({"chosen_inline_result": chosen})
        return chosen

    def my_chat_member(self, user_id: int, new_status: str = "kicked") -> JsonDict:
        """The user blocks ("kicked") or unblocks ("member") the bot in their private chat."""
        statuses = {"kicked": ("member", self.block_user), "member": ("kicked", self.unblock_user)}
        if new_status not in statuses:
            raise ValueError(f"unsupported status {new_status!r}; use 'kicked' or 'member'")
        user = self._user(user_id)
        old_status, apply = statuses[new_status]
        apply(user_id)
        member_update = {
            "chat": self.chats[user_id].as_message_chat(),
            "from": user,
            "date": int(time.time()),
            "old_chat_member": self._plain_member(self.bot_user, old_status),
            "new_chat_member": self._plain_member(self.bot_user, new_status),
        }
        self.push_update({"my_chat_member": member_update})
        return member_update

    def add_bot_to_group(
        self,
        user_id: int,
        chat_id: int,
        title: str = "Agents",
        *,
        is_forum: bool = True,
        status: str = "administrator",
        **rights: bool,
    ) -> JsonDict:
        """The user adds the bot to their supergroup (made, with the user as its
        owner, if it does not exist yet) as an administrator or a plain member;
        Telegram tells the bot with a my_chat_member update from that user."""
        if chat_id not in self.chats:
            self.add_supergroup(chat_id, title, is_forum=is_forum, owner_id=user_id)
            self.chats[chat_id].bot_status = "left"
        return self.set_bot_status(user_id, chat_id, status, **rights)

    def set_bot_status(self, user_id: int, chat_id: int, status: str, **rights: bool
                       ) -> JsonDict:
        """An administrator changes the bot's membership ("administrator" with
        `rights` such as can_manage_topics=False, "member", "left"); my_chat_member
        tells the bot."""
        chat = self.chats[chat_id]
        old = self._member(chat, self.bot_id) if chat.bot_status != "left" else (
            self._plain_member(self.bot_user, "left"))
        chat.bot_status = status
        chat.bot_can_manage_topics = rights.pop("can_manage_topics", True)
        chat.bot_rights = dict(rights)
        member_update = {
            "chat": chat.as_message_chat(),
            "from": self._user(user_id),
            "date": int(time.time()),
            "old_chat_member": old,
            "new_chat_member": self._member(chat, self.bot_id),
        }
        self.push_update({"my_chat_member": member_update})
        return member_update

    # ------------------------------------------------------------------ inspecting and waiting

    def sent_to(self, chat_id: int, thread_id: int | EllipsisType | None = ...) -> list[JsonDict]:
        """Records of messages the bot produced in a chat; thread_id omitted means any thread."""
        return [
            record
            for record in self.sent
            if record["chat_id"] == chat_id
            and (thread_id is ... or record["thread_id"] == thread_id)
        ]

    def calls(self, method: str) -> list[JsonDict]:
        """Parameters of every call of an API method, in order."""
        return [params for name, params in self.requests if name.lower() == method.lower()]

    async def wait_for(
        self,
        predicate: Callable[[FakeTelegramServer], T],
        timeout: float = 10.0,
    ) -> T:
        """Wait until predicate(server) is truthy and return its value."""
        result = await self._wait_until(lambda: predicate(self), timeout)
        if not result:
            raise AssertionError(
                f"condition not met within {timeout}s; server state:\n{self.describe()}"
            )
        return result

    async def wait_updates_confirmed(self, timeout: float = 10.0) -> None:
        """Wait until the bot has confirmed (via getUpdates offset) every queued update."""
        if not await self._wait_until(lambda: not self._updates, timeout):
            pending = [update["update_id"] for update in self._updates]
            raise AssertionError(
                f"updates {pending} not confirmed within {timeout}s; state:\n{self.describe()}"
            )

    def describe(self, last: int = 10) -> str:
        """A readable dump of the most recent activity, for assertion messages."""
        sent = [
            f"  {r['method']} chat={r['chat_id']} thread={r['thread_id']} id={r['message_id']}"
            f"{' (deleted)' if r['deleted'] else ''}: {r['text']!r}"
            for r in self.sent[-last:]
        ]
        requests = [f"  {name} {params}" for name, params in self.requests[-last:]]
        return "\n".join(
            [
                f"last {len(sent)} of {len(self.sent)} sent messages:",
                *sent,
                f"last {len(requests)} of {len(self.requests)} requests:",
                *requests,
                f"unconfirmed updates: {[u['update_id'] for u in self._updates]}",
            ]
        )

    # ------------------------------------------------------------------ fault injection

    def fail_next(
        self,
        method: str,
        error_code: int = 429,
        description: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
        chat_id: int | str | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``method`` (optionally for one chat) fail."""
        if error_code == HTTPStatus.TOO_MANY_REQUESTS:
            retry_after = retry_after or 1
            description = description or f"Too Many Requests: retry after {retry_after}"
        elif error_code == HTTPStatus.FORBIDDEN:
            description = description or BLOCKED
        self._faults.append(
            _Fault(
                method=method,
                error_code=error_code,
                description=description or HTTPStatus(error_code).phrase,
                retry_after=retry_after,
                times=times,
                chat_id=chat_id,
            )
        )

    def answer_oddly_next(self, method: str, times: int = 1) -> None:
        """Perform the next ``times`` calls of ``method`` but answer with a
        result the client cannot parse (a required field missing)."""
        self._odd_answers[method.lower()] = times

    def _take_fault(self, params: _Params) -> _Fault | None:
        fault = next((fault for fault in self._faults if fault.matches(params)), None)
        if fault is not None:
            fault.times -= 1
            if fault.times <= 0:
                self._faults.remove(fault)
        return fault

    # ------------------------------------------------------------------ HTTP layer

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return ApiError(401, "Unauthorized").response()
        if self.latency:
            await asyncio.sleep(self.latency)
        method, handler = _API.get(request.match_info["method"].lower(), (None, None))
        try:
            params = await _read_params(request, method or request.match_info["method"])
            self.requests.append((params.method, params.values))
            if handler is None:
                raise ApiError(404, "Not Found")
            if fault := self._take_fault(params):
                return fault.response()
            result = handler(self, params)
            if inspect.isawaitable(result):
                result = await result
            if self._odd_answers.get(params.method.lower(), 0) > 0 and isinstance(result, dict):
                # What an older self-hosted Bot API server may answer: done, but
                # a field this client requires is missing and one is unknown.
                self._odd_answers[params.method.lower()] -= 1
                result = {k: v for k, v in result.items() if k != "date"} | {"x_new_field": 1}
            return web.json_response({"ok": True, "result": result})
        except ApiError as error:
            return error.response()
        finally:
            self._notify()

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return ApiError(401, "Unauthorized").response()
        if self.latency:
            await asyncio.sleep(self.latency)
        path = request.match_info["path"]
        stored = next((f for f in self.files.values() if f.path == path), None)
        if stored is None:
            return ApiError(404, "Not Found").response()
        content_type = stored.mime_type or "application/octet-stream"
        return web.Response(body=stored.data, content_type=content_type)

    # ------------------------------------------------------------------ internals: waiting

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _emit(self, event: JsonDict) -> None:
        for observer in self.observers:
            observer(event)

    def _topic_changed(self, chat_id: int, thread_id: int) -> None:
        topic = self.topics[chat_id][thread_id]
        self._emit({"type": "topic", "chat_id": chat_id, "thread_id": thread_id, "topic": topic})

    async def _wait_until(self, check: Callable[[], T], within: float) -> T:
        """Re-check after every request or update until check() is truthy or time is up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            changed = self._changed
            result = check()
            remaining = deadline - loop.time()
            if result or remaining <= 0:
                return result
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()

    # ------------------------------------------------------------------ internals: world

    def _user(self, user_id: int) -> JsonDict:
        if user_id not in self.users:
            raise ValueError(f"unknown user {user_id}; call add_user() first")
        return self.users[user_id]

    def _chat_of_user_action(self, user_id: int, chat_id: int) -> _Chat:
        self._user(user_id)
        chat = self.chats.get(chat_id)
        if chat is None:
            raise ValueError(f"unknown chat {chat_id}")
        if chat.type == "private" and chat_id != user_id:
            raise ValueError(f"user {user_id} cannot act in the private chat of {chat_id}")
        if chat.type != "private" and user_id not in chat.members:
            raise ValueError(f"user {user_id} is not a member of chat {chat_id}")
        return chat

    def _stored_message(self, chat: _Chat, message_id: int) -> JsonDict:
        if message_id not in chat.messages:
            raise ValueError(f"no message {message_id} in chat {chat.id}")
        return chat.messages[message_id]

    def _user_thread(
        self, chat: _Chat, thread_id: int | None, reply: JsonDict | None
    ) -> int | None:
        if thread_id is None and reply is not None and reply.get("is_topic_message"):
            return reply["message_thread_id"]
        if thread_id is not None and not self._live_topic(chat, thread_id):
            raise ValueError(f"no topic {thread_id} in chat {chat.id} (or it was deleted)")
        return thread_id

    def _live_topic(self, chat: _Chat, thread_id: int) -> JsonDict | None:
        topic = self.topics.get(chat.id, {}).get(thread_id)
        return topic if topic and not topic["deleted"] else None

    def _user_sends_file(
        self,
        user_id: int,
        chat_id: int,
        stored: _StoredFile,
        caption: str | None,
        thread_id: int | None,
        reply_to: int | None,
        media_group_id: str | None,
        duration: int = 1,
    ) -> JsonDict:
        content = stored.media_content(duration)
        if caption:
            content["caption"] = caption
        if media_group_id:
            content["media_group_id"] = media_group_id
        return self.user_sends(user_id, chat_id, thread_id=thread_id, reply_to=reply_to, **content)

    def _new_file(
        self,
        kind: str,
        data: bytes,
        file_name: str | None = None,
        mime_type: str | None = None,
        *,
        size: int | None = None,
    ) -> _StoredFile:
        number = next(self._file_numbers)
        digest = hashlib.sha256(f"{kind}:{number}".encode()).hexdigest()
        folder, extension = FILE_LOCATIONS.get(kind, ("documents", ""))
        extension = extension or PurePosixPath(file_name or "").suffix
        if kind != "photo":
            mime_type = mime_type or mimetypes.guess_type(file_name or "")[0]
        stored = _StoredFile(
            file_id=f"{number}{kind[:2].upper()}ACAgIAAxkBAA{digest}",  # real ids are ~80 chars
            file_unique_id=f"AQAD{number:011d}",
            kind=kind,
            data=data,
            size=len(data) if size is None else size,
            path=f"{folder}/file_{number}{extension}",
            file_name=file_name,
            mime_type=mime_type,
        )
        self.files[stored.file_id] = stored
        return stored

    def _store_message(
        self,
        chat: _Chat,
        sender: JsonDict,
        thread_id: int | None,
        reply_to: JsonDict | None,
        content: JsonDict,
    ) -> JsonDict:
        message: JsonDict = {
            "message_id": chat.next_message_id(),
            "date": int(time.time()),
            "chat": chat.as_message_chat(),
            "from": sender,
        }
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
            # in a topic, a message that replies to nothing replies to the topic's first message
            reply_to = reply_to or chat.messages.get(thread_id)
        if reply_to is not None:
            message["reply_to_message"] = without_reply(reply_to)
        message.update(content)
        chat.messages[message["message_id"]] = message
        self._emit({"type": "message", "message": message})
        return message

    def _forget_message(self, chat: _Chat, message_id: int) -> None:
        del chat.messages[message_id]
        if record := self._records.get((chat.id, message_id)):
            record["deleted"] = True
        self._emit({"type": "deleted", "chat_id": chat.id, "message_id": message_id})

    def _open_query(self) -> str:
        query_id = str(next(self._query_ids))
        self._open_queries.add(query_id)
        return query_id

    def _close_query(self, query_id: str | None) -> None:
        if query_id not in self._open_queries:
            raise bad_request(QUERY_INVALID)
        self._open_queries.discard(query_id)

    def _is_allowed(self, update_type: str) -> bool:
        if self._allowed_updates is None:
            return update_type not in OPT_IN_UPDATES
        return update_type in self._allowed_updates

    def _set_allowed_updates(self, allowed: list[str] | None) -> None:
        if allowed is not None:
            self._allowed_updates = frozenset(allowed) or None

    @staticmethod
    def _plain_member(user: JsonDict, status: str) -> JsonDict:
        member: JsonDict = {"status": status, "user": user}
        if status == "kicked":
            member["until_date"] = 0
        return member

    def _administrator(self, user: JsonDict, *, is_bot: bool, can_manage_topics: bool) -> JsonDict:
        rights = dict.fromkeys(ADMIN_RIGHTS, True)
        rights |= {"can_manage_topics": can_manage_topics, "can_promote_members": not is_bot}
        return {
            "status": "administrator",
            "user": user,
            "can_be_edited": False,
            "is_anonymous": False,
            **rights,
        }

    def _member(self, chat: _Chat, user_id: int) -> JsonDict:
        if user_id == self.bot_id:
            if chat.type == "private" or chat.bot_status != "administrator":
                return self._plain_member(
                    self.bot_user, "member" if chat.type == "private" else chat.bot_status
                )
            return self._administrator(
                self.bot_user, is_bot=True, can_manage_topics=chat.bot_can_manage_topics
            ) | chat.bot_rights
        user = self.users.get(user_id)
        if user is None or (chat.type == "private" and user_id != chat.id):
            raise bad_request("user not found")
        if user_id == chat.owner_id:
            return {"status": "creator", "user": user, "is_anonymous": False}
        if user_id in chat.admins:
            return self._administrator(user, is_bot=False, can_manage_topics=True)
        in_chat = chat.type == "private" or user_id in chat.members
        return self._plain_member(user, "member" if in_chat else "left")

    # ------------------------------------------------------------------ internals: API checks

    def _chat(self, chat_id: Any) -> _Chat:
        if chat_id is None or chat_id == "":
            raise bad_request("chat_id is empty")
        try:
            return self.chats[int(chat_id)]
        except (KeyError, ValueError):
            raise bad_request("chat not found") from None

    def _writable_chat(self, chat_id: Any) -> _Chat:
        chat = self._chat(chat_id)
        if chat.type == "private" and chat.id in self.blocked:
            raise ApiError(403, BLOCKED)
        if chat.migrated_to is not None:
            raise ApiError(400, "Bad Request: group chat was upgraded to a supergroup chat",
                           migrate_to_chat_id=chat.migrated_to)
        if chat.type != "private" and chat.bot_status in ("left", "kicked"):
            raise ApiError(403, f"Forbidden: bot was kicked from the {chat.type} chat"
                           if chat.bot_status == "kicked" else
                           f"Forbidden: bot is not a member of the {chat.type} chat")
        return chat

    def _target(self, params: _Params) -> _Target:
        """Resolve chat, thread and reply of a send, with Telegram's errors."""
        chat = self._writable_chat(params.get("chat_id"))
        thread_id = params.integer("message_thread_id") if chat.type != "private" else None
        reply = self._replied_message(chat, params)
        if thread_id is None and reply is not None and reply.get("is_topic_message"):
            thread_id = reply["message_thread_id"]
        if thread_id is not None:
            topic = self._live_topic(chat, thread_id)
            if topic is None:
                raise bad_request("message thread not found")
            if topic["closed"]:
                raise bad_request("TOPIC_CLOSED")
        return _Target(chat, thread_id, reply)

    def _replied_message(self, chat: _Chat, params: _Params) -> JsonDict | None:
        reply_parameters = params.get("reply_parameters") or {}
        message_id = reply_parameters.get("message_id") or params.integer("reply_to_message_id")
        if message_id is None:
            return None
        reply_chat = chat
        if reply_parameters.get("chat_id") is not None:
            reply_chat = self._chat(reply_parameters["chat_id"])
        reply = reply_chat.messages.get(int(message_id))
        allow_without = reply_parameters.get("allow_sending_without_reply") or params.flag(
            "allow_sending_without_reply"
        )
        if reply is None and not allow_without:
            raise bad_request("message to be replied not found")
        return reply

    def _reply_markup(self, params: _Params) -> JsonDict | None:
        markup = params.get("reply_markup")
        for button in inline_buttons(markup):
            data = button.get("callback_data")
            if data is not None and len(str(data).encode()) > MAX_CALLBACK_DATA_BYTES:
                raise bad_request("BUTTON_DATA_INVALID")
        return markup

    def _check_rate_limit(self, chat: _Chat) -> None:
        if not self.enforce_limits:
            return
        if (retry_after := self._limiter.retry_after(chat)) is not None:
            self.limit_429s += 1
            raise too_many_requests(retry_after)

    def _resolve_file(self, reference: Any, uploads: dict[str, _Upload], kind: str) -> _StoredFile:
        if not reference:
            raise bad_request(f"there is no {kind} in the request")
        reference = str(reference)
        if reference.startswith("attach://"):
            upload = uploads.get(reference.removeprefix("attach://"))
            if upload is None:
                raise bad_request(f"there is no {kind} in the request")
            if not upload.data:
                raise bad_request("file must be non-empty")
            mime_type = (
                None if upload.content_type == "application/octet-stream" else upload.content_type
            )
            return self._new_file(kind, upload.data, upload.filename, mime_type)
        if reference in self.files:
            return self.files[reference]
        if reference.startswith(("http://", "https://")):
            name = PurePosixPath(urlsplit(reference).path).name or None
            return self._new_file(kind, f"downloaded from {reference}".encode(), name)
        raise bad_request("wrong file identifier/HTTP URL specified")

    def _editable(self, params: _Params) -> tuple[_Chat, JsonDict]:
        chat = self._writable_chat(params.get("chat_id"))
        message = chat.messages.get(params.integer("message_id") or 0)
        if message is None:
            raise bad_request("message to edit not found")
        if message["from"]["id"] != self.bot_id:
            raise bad_request("message can't be edited")
        return chat, message

    # ------------------------------------------------------------------ internals: bot messages

    def _publish(
        self,
        method: str,
        target: _Target,
        content: JsonDict,
        *,
        formatted: _Formatted | None = None,
        markup: JsonDict | None = None,
    ) -> JsonDict:
        """Store a message the bot produced, record it in ``sent`` and return it."""
        if inline_buttons(markup):
            content = content | {"reply_markup": markup}
        message = self._store_message(
            target.chat, self.bot_user, target.thread_id, target.reply_to, content
        )
        file = media_file(message)
        document = message.get("document") or {}
        record = {
            "method": method,
            "chat_id": target.chat.id,
            "message_id": message["message_id"],
            "thread_id": target.thread_id,
            "text": message.get("text", message.get("caption")),
            "html": formatted.html if formatted else None,
            "parse_mode": formatted.parse_mode if formatted else None,
            "reply_markup": markup,
            "reply_to": target.reply_to["message_id"] if target.reply_to else None,
            "media_type": media_type(message),
            "file_id": file["file_id"] if file else None,
            "file_name": document.get("file_name"),
            "media_group_id": message.get("media_group_id"),
            "edits": [],
            "deleted": False,
        }
        self.sent.append(record)
        self._records[(target.chat.id, message["message_id"])] = record
        return message

    def _apply_edit(
        self,
        method: str,
        chat: _Chat,
        message: JsonDict,
        changes: JsonDict,
        formatted: _Formatted | None,
    ) -> JsonDict:
        """Apply changes (None values remove the field) unless nothing would change."""
        if all(message.get(key) == value for key, value in changes.items()):
            raise bad_request(NOT_MODIFIED)
        self._check_rate_limit(chat)  # Telegram counts edits against the chat's limits
        for key, value in changes.items():
            if value is None:
                message.pop(key, None)
            else:
                message[key] = value
        message["edit_date"] = int(time.time())
        record = self._records.get((chat.id, message["message_id"]))
        if record is not None:
            record["text"] = message.get("text", message.get("caption"))
            record["reply_markup"] = message.get("reply_markup")
            if formatted is not None:
                record["html"], record["parse_mode"] = formatted.html, formatted.parse_mode
            record["edits"].append(
                {
                    "method": method,
                    "text": record["text"],
                    "html": record["html"],
                    "reply_markup": record["reply_markup"],
                }
            )
        self._emit({"type": "edited", "message": message})
        return message

    @staticmethod
    def _markup_change(markup: JsonDict | None) -> JsonDict | None:
        """Only inline keyboards live on a message; anything else removes the keyboard."""
        return markup if inline_buttons(markup) else None

    # ================================================================== Bot API methods

    @api_method("getMe")
    def _get_me(self, params: _Params) -> JsonDict:
        return self.bot_user | {
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": self.inline_mode,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    @api_method("getUpdates")
    async def _get_updates(self, params: _Params) -> list[JsonDict]:
        if self.webhook_url:
            raise ApiError(409, WEBHOOK_CONFLICT)
        offset = params.integer("offset")
        if offset is not None and offset < 0:
            self._updates = self._updates[offset:]
        elif offset:
            self._updates = [update for update in self._updates if update["update_id"] >= offset]
        self._set_allowed_updates(params.get("allowed_updates"))
        limit = min(max(params.integer("limit") or 100, 1), 100)

        # only one poller at a time: a newer getUpdates makes the older one fail with 409
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()
        await self._wait_until(
            lambda: self._updates or self._closing or generation != self._poll_generation,
            within=max(params.integer("timeout") or 0, 0),
        )
        if generation != self._poll_generation:
            raise ApiError(409, POLL_CONFLICT)
        return self._updates[:limit]

    @api_method("setWebhook")
    def _set_webhook(self, params: _Params) -> bool:
        self.webhook_url = params.text("url") or ""
        self._set_allowed_updates(params.get("allowed_updates"))
        if params.flag("drop_pending_updates"):
            self._updates.clear()
        return True

    @api_method("deleteWebhook")
    def _delete_webhook(self, params: _Params) -> bool:
        self.webhook_url = ""
        if params.flag("drop_pending_updates"):
            self._updates.clear()
        return True

    @api_method("getWebhookInfo")
    def _get_webhook_info(self, params: _Params) -> JsonDict:
        return {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
            **self._webhook_error,
        }

    @api_method("sendMessage")
    def _send_message(self, params: _Params) -> JsonDict:
        target = self._target(params)
        formatted = message_text(params.values)
        markup = self._reply_markup(params)
        self._check_rate_limit(target.chat)
        content = present(formatted.fields("text", "entities"))
        return self._publish(params.method, target, content, formatted=formatted, markup=markup)

    @api_method("sendPhoto")
    @api_method("sendDocument")
    @api_method("sendVoice")
    @api_method("sendVideo")
    @api_method("sendAudio")
    @api_method("sendAnimation")
    def _send_media(self, params: _Params) -> JsonDict:
        kind = MEDIA_METHODS[params.method]
        target = self._target(params)
        formatted = caption(params.values)
        markup = self._reply_markup(params)
        stored = self._resolve_file(params.file_reference(kind), params.uploads, kind)
        self._check_rate_limit(target.chat)
        content = stored.media_content(params.integer("duration") or 1)
        content |= present(formatted.fields("caption", "caption_entities"))
        return self._publish(params.method, target, content, formatted=formatted, markup=markup)

    @api_method("sendMediaGroup")
    def _send_media_group(self, params: _Params) -> list[JsonDict]:
        target = self._target(params)
        media = params.get("media")
        if not isinstance(media, list) or not media:
            raise bad_request("there is no media in the request")
        if len(media) > MAX_ALBUM_SIZE:
            raise bad_request("Too many messages to send as an album")
        if any(item.get("type") not in MEDIA_GROUP_KINDS for item in media):
            raise bad_request("can't parse InputMedia: unsupported media type")
        items = [
            (self._resolve_file(item.get("media"), params.uploads, item["type"]), caption(item))
            for item in media
        ]
        self._check_rate_limit(target.chat)
        group_id = str(next(self._media_group_ids))
        return [
            self._publish(
                params.method,
                target,
                stored.media_content()
                | present(formatted.fields("caption", "caption_entities"))
                | {"media_group_id": group_id},
                formatted=formatted,
            )
            for stored, formatted in items
        ]

    def _source_message(self, params: _Params, action: str) -> JsonDict:
        source_chat = self._chat(params.get("from_chat_id"))
        source = source_chat.messages.get(params.integer("message_id") or 0)
        if source is None:
            raise bad_request(f"message to {action} not found")
        return source

    @api_method("copyMessage")
    def _copy_message(self, params: _Params) -> JsonDict:
        source = self._source_message(params, "copy")
        target = self._target(params)
        markup = self._reply_markup(params)
        content = {k: v for k, v in source.items() if k not in MESSAGE_META_FIELDS}
        formatted = None
        if "caption" in params.values:
            formatted = caption(params.values)
            content = present(content | formatted.fields("caption", "caption_entities"))
        self._check_rate_limit(target.chat)
        message = self._publish(params.method, target, content, formatted=formatted, markup=markup)
        return {"message_id": message["message_id"]}

    @api_method("forwardMessage")
    def _forward_message(self, params: _Params) -> JsonDict:
        source = self._source_message(params, "forward")
        target = self._target(params)
        content = {k: v for k, v in source.items() if k not in MESSAGE_META_FIELDS}
        content["forward_origin"] = source.get("forward_origin") or {
            "type": "user",
            "date": source["date"],
            "sender_user": source["from"],
        }
        self._check_rate_limit(target.chat)
        return self._publish(params.method, target, content)

    @api_method("editMessageText")
    def _edit_message_text(self, params: _Params) -> JsonDict:
        chat, message = self._editable(params)
        if "text" not in message:
            raise bad_request("there is no text in the message to edit")
        formatted = message_text(params.values)
        markup = self._markup_change(self._reply_markup(params))
        changes = formatted.fields("text", "entities") | {"reply_markup": markup}
        return self._apply_edit(params.method, chat, message, changes, formatted)

    @api_method("editMessageCaption")
    def _edit_message_caption(self, params: _Params) -> JsonDict:
        chat, message = self._editable(params)
        if media_type(message) is None:
            raise bad_request("there is no caption in the message to edit")
        formatted = caption(params.values)
        markup = self._markup_change(self._reply_markup(params))
        changes = formatted.fields("caption", "caption_entities") | {"reply_markup": markup}
        return self._apply_edit(params.method, chat, message, changes, formatted)

    @api_method("editMessageReplyMarkup")
    def _edit_message_reply_markup(self, params: _Params) -> JsonDict:
        chat, message = self._editable(params)
        changes = {"reply_markup": self._markup_change(self._reply_markup(params))}
        return self._apply_edit(params.method, chat, message, changes, None)

    @api_method("deleteMessage")
    def _delete_message(self, params: _Params) -> bool:
        chat = self._chat(params.get("chat_id"))
        message_id = params.integer("message_id") or 0
        if message_id not in chat.messages:
            raise bad_request("message to delete not found")
        self._check_rate_limit(chat)
        self._forget_message(chat, message_id)
        return True

    @api_method("sendChatAction")
    def _send_chat_action(self, params: _Params) -> bool:
        self._target(params)
        return True

    @api_method("setMessageReaction")
    def _set_message_reaction(self, params: _Params) -> bool:
        chat = self._writable_chat(params.get("chat_id"))
        message_id = params.integer("message_id") or 0
        if message_id not in chat.messages:
            raise bad_request("message to react not found")
        self._check_rate_limit(chat)
        self.reactions[(chat.id, message_id)] = params.get("reaction", [])
        return True

    @api_method("pinChatMessage")
    def _pin_chat_message(self, params: _Params) -> bool:
        chat = self._writable_chat(params.get("chat_id"))
        message_id = params.integer("message_id") or 0
        message = chat.messages.get(message_id)
        if message is None:
            raise bad_request("message to pin not found")
        # In groups the bot must be an administrator with can_pin_messages.
        if chat.type != "private" and (
            chat.bot_status != "administrator" or not chat.bot_rights.get("can_pin_messages", True)
        ):
            raise bad_request("not enough rights to manage pinned messages in the chat")
        self._check_rate_limit(chat)
        pinned = self.pinned.setdefault(chat.id, [])
        if message_id in pinned:
            pinned.remove(message_id)
        pinned.append(message_id)
        # Telegram posts a service message (silently with disable_notification).
        self._store_message(
            chat, self.bot_user, message.get("message_thread_id"), None,
            {"pinned_message": without_reply(message)},
        )
        return True

    @api_method("unpinChatMessage")
    def _unpin_chat_message(self, params: _Params) -> bool:
        chat = self._writable_chat(params.get("chat_id"))
        pinned = self.pinned.get(chat.id, [])
        message_id = params.integer("message_id") or (pinned[-1] if pinned else 0)
        if message_id not in pinned:
            raise bad_request("message to unpin not found")
        pinned.remove(message_id)
        return True

    @api_method("answerCallbackQuery")
    def _answer_callback_query(self, params: _Params) -> bool:
        text = params.text("text")
        if text and len(text) > 200:
            raise bad_request("MESSAGE_TOO_LONG")
        query_id = params.text("callback_query_id")
        self._close_query(query_id)
        self.callback_answers[str(query_id)] = {
            "text": text,
            "show_alert": params.flag("show_alert"),
            "url": params.text("url"),
        }
        self._emit(
            {"type": "callback_answer", "query_id": str(query_id)}
            | self.callback_answers[str(query_id)]
        )
        return True

    @api_method("answerInlineQuery")
    def _answer_inline_query(self, params: _Params) -> bool:
        results = params.get("results", [])
        if len(results) > 50:
            raise bad_request("RESULTS_TOO_MUCH")
        if len({result.get("id") for result in results}) != len(results):
            raise bad_request("RESULT_ID_DUPLICATE")
        query_id = params.text("inline_query_id")
        self._close_query(query_id)
        self.inline_answers[str(query_id)] = {
            "results": results,
            "cache_time": params.integer("cache_time"),
            "is_personal": params.flag("is_personal"),
            "next_offset": params.text("next_offset"),
            "button": params.get("button"),
        }
        self._emit(
            {"type": "inline_answer", "query_id": str(query_id)}
            | self.inline_answers[str(query_id)]
        )
        return True

    @staticmethod
    def _commands_key(params: _Params) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), params.text("language_code") or ""

    @api_method("setMyCommands")
    def _set_my_commands(self, params: _Params) -> bool:
        commands = params.get("commands", [])
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise bad_request("BOT_COMMAND_INVALID")
        self.commands[self._commands_key(params)] = commands
        return True

    @api_method("deleteMyCommands")
    def _delete_my_commands(self, params: _Params) -> bool:
        self.commands.pop(self._commands_key(params), None)
        return True

    @api_method("getMyCommands")
    def _get_my_commands(self, params: _Params) -> list[JsonDict]:
        return self.commands.get(self._commands_key(params), [])

    @api_method("setChatMenuButton")
    def _set_chat_menu_button(self, params: _Params) -> bool:
        self.menu_buttons[params.integer("chat_id")] = params.get("menu_button")
        return True

    @api_method("getChat")
    def _get_chat(self, params: _Params) -> JsonDict:
        chat = self._chat(params.get("chat_id"))
        return chat.as_message_chat() | {
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    @api_method("getChatMember")
    def _get_chat_member(self, params: _Params) -> JsonDict:
        chat = self._chat(params.get("chat_id"))
        return self._member(chat, params.integer("user_id") or 0)

    @api_method("getChatAdministrators")
    def _get_chat_administrators(self, params: _Params) -> list[JsonDict]:
        chat = self._chat(params.get("chat_id"))
        if chat.type == "private":
            raise bad_request("there are no administrators in the private chat")
        admin_ids = [chat.owner_id] if chat.owner_id else []
        admin_ids += [*sorted(chat.admins - set(admin_ids)), self.bot_id]
        return [self._member(chat, user_id) for user_id in admin_ids]

    def _managed_topic(self, params: _Params) -> tuple[_Chat, int, JsonDict]:
        chat = self._writable_chat(params.get("chat_id"))
        thread_id = params.integer("message_thread_id") or 0
        topic = self._live_topic(chat, thread_id)
        if topic is None:
            raise bad_request("TOPIC_ID_INVALID")
        return chat, thread_id, topic

    def _topic_service_message(self, chat: _Chat, thread_id: int, content: JsonDict) -> None:
        self._store_message(chat, self.bot_user, thread_id, None, content)

    @api_method("createForumTopic")
    def _create_forum_topic(self, params: _Params) -> JsonDict:
        chat = self._writable_chat(params.get("chat_id"))
        if not chat.is_forum:
            raise bad_request("the chat is not a forum")
        if not chat.bot_can_manage_topics:
            raise bad_request("not enough rights to create a topic")
        self._check_rate_limit(chat)  # topic calls count against the group's limits
        name = params.text("name") or ""
        icon_color = params.integer("icon_color") or DEFAULT_TOPIC_COLOR
        created = {"name": name, "icon_color": icon_color}
        message = self._store_message(
            chat, self.bot_user, None, None, {"forum_topic_created": created}
        )
        thread_id = message["message_id"]
        message |= {"message_thread_id": thread_id, "is_topic_message": True}
        self.topics[chat.id][thread_id] = created | {"closed": False, "deleted": False}
        self._topic_changed(chat.id, thread_id)
        return {"message_thread_id": thread_id} | created

    @api_method("editForumTopic")
    def _edit_forum_topic(self, params: _Params) -> bool:
        chat, thread_id, topic = self._managed_topic(params)
        name = params.text("name")
        if name is None or name == topic["name"]:
            raise bad_request("TOPIC_NOT_MODIFIED")
        self._check_rate_limit(chat)
        topic["name"] = name
        self._topic_changed(chat.id, thread_id)
        self._topic_service_message(chat, thread_id, {"forum_topic_edited": {"name": name}})
        return True

    def _set_topic_closed(self, params: _Params, closed: bool) -> bool:
        chat, thread_id, topic = self._managed_topic(params)
        if topic["closed"] == closed:
            raise bad_request("TOPIC_NOT_MODIFIED")
        self._check_rate_limit(chat)
        topic["closed"] = closed
        self._topic_changed(chat.id, thread_id)
        event = "forum_topic_closed" if closed else "forum_topic_reopened"
        self._topic_service_message(chat, thread_id, {event: {}})
        return True

    @api_method("closeForumTopic")
    def _close_forum_topic(self, params: _Params) -> bool:
        return self._set_topic_closed(params, closed=True)

    @api_method("reopenForumTopic")
    def _reopen_forum_topic(self, params: _Params) -> bool:
        return self._set_topic_closed(params, closed=False)

    @api_method("deleteForumTopic")
    def _delete_forum_topic(self, params: _Params) -> bool:
        chat, thread_id, _ = self._managed_topic(params)
        self._check_rate_limit(chat)
        self.delete_topic(chat.id, thread_id)
        return True

    @api_method("getFile")
    def _get_file(self, params: _Params) -> JsonDict:
        stored = self.files.get(params.text("file_id") or "")
        if stored is None:
            raise bad_request("invalid file_id")
        if stored.size > MAX_DOWNLOAD_SIZE:
            raise bad_request("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.size,
            "file_path": stored.path,
        }
