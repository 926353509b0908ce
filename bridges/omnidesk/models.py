"""Omnidesk payloads as the API sends them (providers/omnidesk.md).

Only the fields the bridge uses are modelled; everything else is ignored.
These types never leave the `bridges.omnidesk` package.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from bridges.errors import Unavailable


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


def _zero_if_empty(value: object) -> object:
    # Ids of "nobody" arrive as 0, and occasionally as null or "".
    return 0 if value in (None, "") else value


def _text(value: object) -> object:
    return "" if value is None else value


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
    attachments: list[FileInfo] = Field(default_factory=list)
    note: bool = False
    sent_via_rule: bool = False
    created_at: Rfc2822


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


def one(payload: object, key: str, model: type[M]) -> M:
    """`{"case": {...}}` → Case."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get(key), Mapping):
        raise Unavailable(f"unexpected Omnidesk answer: no {key!r} object", provider="omnidesk")
    return _validated(model, payload[key])


def listing(payload: object, key: str, model: type[M]) -> tuple[list[M], int]:
    """Lists come as an object keyed by position plus `total_count`, not an
    array (providers/omnidesk.md, "Basics"): `{"0": {"case": {...}}, ...,
    "total_count": 17}`. Returns the items in position order and the total."""
    if isinstance(payload, list) and not payload:
        return [], 0  # an empty list is sometimes sent as []
    if not isinstance(payload, Mapping):
        raise Unavailable(f"unexpected Omnidesk answer for a {key} list", provider="omnidesk")
    positions = sorted((int(name), entry) for name, entry in payload.items() if name.isdigit())
    items = []
    for _, entry in positions:
        if isinstance(entry, Mapping) and isinstance(entry.get(key), Mapping):
            items.append(_validated(model, entry[key]))
    total = str(payload.get("total_count", ""))
    return items, int(total) if total.isdigit() else len(items)


def _validated(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Unavailable(
            f"unexpected Omnidesk {model.__name__.lower()}: {exc.error_count()} bad field(s)",
            provider="omnidesk",
        ) from exc
