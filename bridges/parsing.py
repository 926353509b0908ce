"""Reading lists of records the same way for every provider: one record that
cannot be read is logged with its id and its position and skipped, never the
whole page (issue 13)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

log = logging.getLogger("deskbridge.bridges")

M = TypeVar("M", bound=BaseModel)


def readable(model: type[M], items: Iterable[Any], *, provider: str, kind: str,
             id_fields: Sequence[str]) -> list[M]:
    """The items that validate as `model`, in order. `id_fields` name what
    identifies an item in the log (the first present), never a secret."""
    parsed = []
    for position, item in enumerate(items):
        try:
            parsed.append(model.model_validate(item))
        except ValidationError as exc:
            fields = sorted({str(error["loc"][0]) for error in exc.errors() if error["loc"]})
            log.warning("skipping an unreadable %s %s (id %s, position %d): %s", provider,
                        kind, _id_of(item, id_fields), position,
                        ", ".join(fields) or "not an object")
    return parsed


def _id_of(item: Any, fields: Sequence[str]) -> object:
    if not isinstance(item, dict):
        return None
    for name in fields:
        value = item.get(name)
        if isinstance(value, dict):  # Plusofon's `@attributes: {"id": ...}`
            value = value.get("id")
        if value not in (None, ""):
            return value
    return None
