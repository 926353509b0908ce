"""Plusofon payloads, as providers/plusofon.md describes them.

The ticket list is an XML document turned into JSON: every field is a
string, an empty element comes out as `[]` or `{}`, and the list holds one
object when there is one ticket and a list when there are several. The
validators below absorb those quirks so that nothing past this module sees
them.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from bridges.parsing import readable

log = logging.getLogger("deskbridge.bridges.plusofon")


def _as_text(value: object) -> str:
    if value is None or value == [] or value == {}:
        return ""  # an empty XML element
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str | int | float):
        return str(value)
    raise ValueError(f"expected a string, got {type(value).__name__}")


def _as_int(value: object) -> int:
    text = _as_text(value).strip()
    return int(text) if text.lstrip("-").isdigit() else 0


def _as_flag(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes"}
    return bool(value)


def as_list(value: object) -> list[Any]:
    """One object, a list of them, or nothing (see the module docstring)."""
    if value is None or value == {} or value == "":
        return []
    if isinstance(value, list):
        return value
    return [value]


Text = Annotated[str, BeforeValidator(_as_text)]
Number = Annotated[int, BeforeValidator(_as_int)]
Flag = Annotated[bool, BeforeValidator(_as_flag)]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)



class TicketAttributes(_Payload):
    id: Text = ""
    flagtype: Text = ""


class TicketSummary(_Payload):
    """An element of `GET api/v1/ticket`."""

    attributes: TicketAttributes = Field(default_factory=TicketAttributes, alias="@attributes")
    displayid: Text = ""
    statusid: Text = ""
    userid: Text = ""
    userorganization: Text = ""  # the contract number
    fullname: Text = ""
    email: Text = ""
    subject: Text = ""
    lastreplier: Text = ""
    creationtime: Number = 0  # Unix seconds
    lastactivity: Number = 0  # Unix seconds
    replies: Number = 0
    # Not in the page's example of the list; used when Plusofon sends it.
    unread_messages: Flag | None = None

    @property
    def ticket_id(self) -> str:
        return self.attributes.id or self.displayid


class PostAuthor(_Payload):
    id: Text = ""
    name: Text = ""


class PostAttachment(_Payload):
    """A file on a post. The page does not show its fields: a bare file name
    and the usual names below are read when present (an assumption written
    down in the README)."""

    id: Text = ""
    filename: Text = ""
    url: Text = ""
    size: Number = 0
    mimetype: Text = ""

    @model_validator(mode="before")
    @classmethod
    def _spellings(cls, value: object) -> object:
        if isinstance(value, str):
            return {"filename": value}
        if isinstance(value, dict):
            value = dict(value)
            value.setdefault("filename", value.get("name") or value.get("file_name") or "")
            value.setdefault("url", value.get("link") or "")
        return value


class Post(_Payload):
    id: Text
    position: int = 0  # among the ticket's posts as sent, unreadable ones included
    date: Text = ""  # "2021-09-23 17:44:27", local time of the server
    text: Text = ""
    author: PostAuthor = Field(default_factory=PostAuthor)
    attachments: Annotated[list[PostAttachment], BeforeValidator(as_list)] = Field(
        default_factory=list
    )


def _readable_posts(value: object) -> list[Post]:
    """The posts that can be read; one that cannot is logged with its id and
    skipped (posts are known by id, so the others keep their meaning)."""
    return readable(Post, as_list(value), provider="Plusofon", kind="post", id_fields=("id",))


class TicketFull(_Payload):
    """`GET api/v1/ticket/{id}`, and the answer of create and answer."""

    id: Text
    subject: Text = ""
    date: Text = ""
    status: Flag = True  # true: open (active); false: closed
    unread_messages: Flag = False
    posts: Annotated[list[Post], BeforeValidator(_readable_posts)] = Field(
        default_factory=list)
    # Posts Plusofon sent, readable or not; each post knows its place among them.
    post_count: int = 0

    @model_validator(mode="before")
    @classmethod
    def _places(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        items = as_list(value.get("posts"))
        return {**value, "post_count": len(items), "posts": [
            {**item, "position": index} if isinstance(item, dict) else item
            for index, item in enumerate(items)]}


def parse_ticket_list(body: object) -> list[TicketSummary]:
    """`{"ticket": {...}}`, `{"ticket": [...]}`, or an empty document (`{}`,
    `[]`, `{"ticket": []}`, `{"ticket": {}}`); a ticket that cannot be read,
    or has no id, is logged and skipped."""
    if isinstance(body, list):
        items: list[Any] = body
    elif isinstance(body, dict):
        items = as_list(body.get("ticket"))
    else:
        raise ValueError(f"unexpected ticket list: {type(body).__name__}")
    tickets = readable(TicketSummary, [item for item in items if item != {}],
                       provider="Plusofon", kind="ticket", id_fields=("@attributes", "displayid"))
    kept = [ticket for ticket in tickets if ticket.ticket_id]
    if len(kept) < len(tickets):
        log.warning("skipping %d Plusofon ticket(s) listed without an id",
                    len(tickets) - len(kept))
    return kept
