"""Zenlix API payloads (providers/zenlix.md), parsed leniently: the server
sends numbers as strings or ints, and "nobody" as 0, "0", "" or null.

These types never leave `bridges.zenlix`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field


def _hash_or_none(value: Any) -> str | None:
    """A user or ticket hash; 0/"0"/""/null mean nobody (e.g. `to_user_hash`
    of a ticket addressed to a department)."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip().lower()
    return None if text in ("", "0", "null") else text


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _name(value: Any) -> str:
    """A short name the server sends, "0" (or null) when there is none."""
    text = "" if value is None else str(value).strip()
    return "" if text == "0" else text


def _int_or_none(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


Hash = Annotated[str | None, BeforeValidator(_hash_or_none)]
Text = Annotated[str, BeforeValidator(_text)]
Name = Annotated[str, BeforeValidator(_name)]
OptionalInt = Annotated[int | None, BeforeValidator(_int_or_none)]


class Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SignIn(Payload):
    """`auth`: the API key (also called `uniq_id`) and the account's name."""

    uniq_id: Text = ""
    fio: Text = ""


class ListedTicket(Payload):
    """A ticket of `ticket_list` (its text keeps HTML and is cut at 150 bytes)."""

    status: Text  # arch | free | ok | lock_by_me | lock_by_other
    id_ticket: int
    prio: OptionalInt = 1
    client_hash: Hash = None
    subj: Text = ""
    ticket_hash: Hash
    text: Text = ""
    date_created: Text = ""
    to_user_hash: Hash = None
    user_init_hash: Hash = None
    to_unit_id: OptionalInt = None
    # The holder's short name when status is lock_by_other (ZENLIX 2.95 sends
    # it though the seed does not list it): a lock passed from one agent to
    # another shows only here.
    lock_by_other_fio: Name = ""


class TicketDetail(Payload):
    """`ticket_view`: the whole ticket; `lock_by`/`ok_by` are user hashes."""

    id_ticket: int
    ticket_hash: Hash
    status: Text = ""  # relative to the caller, as in `ticket_list`
    subj: Text = ""
    prio: OptionalInt = 1
    text: Text = ""
    date_created: Text = ""
    unit_id: OptionalInt = None
    client_id: Hash = None
    user_to_id: Hash = None
    user_init_id: Hash = None
    lock_by: Hash = None
    ok_by: Hash = None
    ok_date: Text = ""
    lock_by_fio: Name = ""  # the holder's short name, as ticket_list's lock_by_other_fio


class Comment(Payload):
    """One of `get_ticket_comments`, oldest first; there is no comment id."""

    author: Hash = None
    dt: Text = ""
    text: Text = ""
    usr_fio: Text = ""


class UserShort(Payload):
    """A row of `get_users_list`/`get_user_by_dep`; `uniq_id` here is the user
    hash, not an API key (providers/zenlix.md)."""

    user_hash: Hash = Field(validation_alias=AliasChoices("uniq_id", "user_hash"))
    fio: Text = ""
    is_client: OptionalInt = 0
    priv: OptionalInt = 1
    unit: Text = ""
    email: Text = ""
    # 0 disabled, 1 active, 2 deleted; `status_user` in get_users_list.
    status: OptionalInt = Field(default=None,
                                validation_alias=AliasChoices("status", "status_user"))


class UserInfo(Payload):
    """`get_user_info`; an unknown hash answers `ok` with null fields."""

    fio: Text = ""
    tel: Text = ""
    email: Text = ""
    is_client: OptionalInt = None
    priv: OptionalInt = None
    unit: Text = ""


class Named(Payload):
    """A department, subject or position: `{id, name}`."""

    id: int
    name: Text = ""


class Created(Payload):
    ticket_hash: Hash
    ticket_id: OptionalInt = None


def first_of(answer: dict[str, Any], field: str) -> dict[str, Any] | None:
    """`ticket`/`info` are one-element lists in the answers; None when absent."""
    value = answer.get(field)
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, dict) else None


def list_of(answer: dict[str, Any], field: str) -> list[dict[str, Any]]:
    """The rows of a list field: none when it is absent, null or empty, and
    a PHP array that lost its order (an object keyed by position) read in
    position order."""
    value = answer.get(field)
    if isinstance(value, dict):
        value = [value[key] for key in sorted(value, key=lambda k: (len(str(k)), str(k)))]
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
