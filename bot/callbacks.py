"""Callback-data factories. Everything in them is untrusted: the services
check ownership and membership again on the server side."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData


class MenuCb(CallbackData, prefix="m"):
    action: str  # new | list | help | lang


class CustomerCb(CallbackData, prefix="c"):
    action: str  # page | open | write | close | reopen | rate | nocomment | place | new
    ticket_id: int = 0
    value: int = 0


class DepartmentCb(CallbackData, prefix="d"):
    draft_id: int
    department_id: str


class AgentCb(CallbackData, prefix="a"):
    action: str  # take | close | reopen | prio | setprio | note | back
    ticket_id: int
    value: str = ""


class DeadCb(CallbackData, prefix="x"):
    action: str  # retry | discard
    row_id: int


class StatsCb(CallbackData, prefix="s"):
    action: str  # chart
