"""Errors a service raises to tell the user something; the one error handler
(`bot.handlers.errors`) renders `key` in the user's language."""

from __future__ import annotations

from typing import Any


class UserFacingError(Exception):
    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


class TicketNotFound(UserFacingError):
    def __init__(self) -> None:
        super().__init__("errors.ticket_not_found")


class NotSupported(UserFacingError):
    """The active provider lacks the capability (see its Capabilities)."""

    def __init__(self) -> None:
        super().__init__("errors.not_supported")
