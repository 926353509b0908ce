"""Omnidesk payloads as the API sends them (providers/omnidesk.md).

Only the fields the bridge uses are modelled; everything else is ignored.
What the document does not promise is optional, and answers of the real API
seen by third-party clients parse (issue 13): an empty page as
`{"case": []}` without `total_count`, extra case fields (`closed_at`,
`last_response_at`, `parent_case_id`, `recipient_cc`, `closing_speed` "-"),
messages with `sent_at` (delayed sending) and without `content_html`. One
record that still cannot be read is logged with its id and skipped, never
the whole page. These types never leave the `bridges.omnidesk` package.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from bridges.errors import Unavailable
from bridges.parsing import readable


def parse_rfc2822(value: object) -> datetime:
    """Dates come as RFC 2822 strings ("Mon, 05 May 2014 00:15:17 +0300");
    Unix timestamps are accepted too, as the API takes both in filters."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return datetime.fromtimestamp(int(text), UTC)
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not an RFC 2822 date: {value!r}") from exc
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError(f"not a date: {value!r}")


def _optional_date(value: object) -> datetime | None:
    """A date the bridge can do without: unreadable is none."""
    try:
        return parse_rfc2822(value) if value not in (None, "", "-", 0, "0") else None
    except ValueError:
        return None


def _zero_if_empty(value: object) -> object:
    # Ids of "nobody" arrive as 0, and occasionally as null or "".
    return 0 if value in (None, "") else value


def _text(value: object) -> object:
    return "" if value is None else value


def _files(value: object) -> object:
    # No files come as null, [] or {}; a PHP array with gaps as an object.
    if value is None or value == "":
        return []
    if isinstance(value, Mapping):
        return list(value.values())
    return value


Rfc2822 = Annotated[datetime, BeforeValidator(parse_rfc2822)]
OptionalId = Annotated[int, BeforeValidator(_zero_if_empty)]
Text = Annotated[str, BeforeValidator(_text)]
# Knowledge-base texts are objects keyed by language id with `language_id=all`.
Localised = Annotated[str | dict[str, str], BeforeValidator(_text)]


class Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Case(Payload):
    case_id: int
    case_number: Text = ""
    subject: Text = ""
    user_id: OptionalId = 0
    staff_id: OptionalId = 0
    group_id: OptionalId = 0
    status: Text = "open"
    priority: Text = "normal"
    channel: Text = ""
    deleted: bool = False
    spam: bool = False
    created_at: Rfc2822
    updated_at: Rfc2822


class FileInfo(Payload):
    file_id: OptionalId = 0
    file_name: Text = "file"
    file_size: int | None = None
    mime_type: str | None = None
    url: str | None = None


class Message(Payload):
    message_id: int
    user_id: OptionalId = 0
    staff_id: OptionalId = 0
    content: Text = ""
    content_html: Text = ""
    attachments: Annotated[list[FileInfo], BeforeValidator(_files)] = Field(
        default_factory=list)
    note: bool = False
    sent_via_rule: bool = False
    created_at: Rfc2822
    # A message whose sending was delayed: when it goes (or went) out.
    sent_at: Annotated[datetime | None, BeforeValidator(_optional_date)] = None

    @model_validator(mode="before")
    @classmethod
    def _created(cls, value: object) -> object:
        # A delayed message seen without `created_at` dates from its sending.
        if isinstance(value, Mapping) and not value.get("created_at") and value.get("sent_at"):
            return {**value, "created_at": value["sent_at"]}
        return value


class Staff(Payload):
    staff_id: int
    staff_email: Text = ""
    staff_full_name: Text = ""
    active: bool = True


class Group(Payload):
    group_id: int
    group_title: Text = ""
    active: bool = True


class CustomChannel(Payload):
    channel_id: int
    channel_api_key: Text = ""
    title: Text = ""
    active: bool = True


class KbArticle(Payload):
    article_id: int
    article_title: Localised = ""
    article_content: Localised = ""
    access_type: Text = "public"
    active: bool = True


M = TypeVar("M", bound=Payload)


@dataclass(frozen=True, slots=True)
class Listing(Generic[M]):
    """One page of a list: the readable items in position order, the list's
    `total_count` (None when the answer has none), and how many entries the
    page held, unreadable ones included (a full page means: page on)."""

    items: list[M]
    total: int | None
    entries: int

    def last_page(self, page: int, size: int) -> bool:
        return self.entries < size or (self.total is not None and page * size >= self.total)


def one(payload: object, key: str, model: type[M]) -> M:
    """`{"case": {...}}` → Case."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get(key), Mapping):
        raise Unavailable(f"unexpected Omnidesk answer: no {key!r} object", provider="omnidesk")
    try:
        return model.model_validate(payload[key])
    except ValidationError as exc:
        raise Unavailable(
            f"unexpected Omnidesk {model.__name__.lower()}: {exc.error_count()} bad field(s)",
            provider="omnidesk",
        ) from exc


def listing(payload: object, key: str, model: type[M]) -> Listing[M]:
    """Lists come as an object keyed by position plus `total_count`, not an
    array (providers/omnidesk.md, "Basics"): `{"0": {"case": {...}}, ...,
    "total_count": 17}`. An empty one also as `[]`, `{}`, `{"case": []}` or
    nothing at all."""
    if payload is None or (isinstance(payload, list) and not payload):
        return Listing([], 0, 0)
    if not isinstance(payload, Mapping):
        raise Unavailable(f"unexpected Omnidesk answer for a {key} list", provider="omnidesk")
    positions = sorted((int(name), entry) for name, entry in payload.items()
                       if str(name).isdigit())
    records = [entry.get(key) if isinstance(entry, Mapping) else None for _, entry in positions]
    items = readable(model, records, provider="Omnidesk", kind=key,
                     id_fields=(f"{key}_id", "article_id", "channel_id"))
    total = str(payload.get("total_count", "")).strip()
    return Listing(items, int(total) if total.isdigit() else None, len(positions))
