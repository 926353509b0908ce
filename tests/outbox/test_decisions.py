"""The outbox's decision table, as a table: every kind of failure, and
what it leads to."""

from __future__ import annotations

import pytest
from aiogram.exceptions import TelegramBadRequest, TelegramRetryAfter, TelegramServerError
from aiogram.methods import SendMessage

from bot.outbox.decisions import Action, Dead, Deferred, NotReady, decide
from bot.telegram.pacer import SendLater
from bridges.errors import (
    AuthFailed,
    CredentialsRefused,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    Unavailable,
)

METHOD = SendMessage(chat_id=1, text="x")

TABLE = [
    # failure, attempts spent before, decision, delay (None: any), attempt spent
    (Deferred(2.5), 0, Action.WAIT, 2.5, False),
    (NotReady(), 9, Action.WAIT, 1.0, False),
    (SendLater(1.2), 9, Action.WAIT, 1.2, False),
    (TelegramRetryAfter(METHOD, "Too Many Requests", 7), 9, Action.WAIT, 7.0, False),
    (RateLimited("over budget", retry_after=30), 9, Action.WAIT, 30.0, False),
    (RateLimited("over budget"), 0, Action.WAIT, 60.0, False),
    (CredentialsRefused("401", setting="OMNIDESK_API_KEY"), 9, Action.HOLD, None, False),
    (AuthFailed("session expired"), 0, Action.RETRY, None, True),
    (Unavailable("503"), 0, Action.RETRY, None, True),
    (TimeoutError(), 3, Action.RETRY, None, True),
    (TelegramServerError(METHOD, "Bad Gateway"), 0, Action.RETRY, None, True),
    (TelegramBadRequest(METHOD, "chat is deactivated"), 0, Action.RETRY, None, True),
    (Unavailable("503"), 9, Action.BURY, None, True),  # the tenth attempt of ten
    (NotFound("no such case"), 0, Action.BURY, None, True),
    (Invalid("empty content"), 0, Action.BURY, None, True),
    (Forbidden("no privileges"), 0, Action.BURY, None, True),
    (Dead("ticket 5 is gone"), 0, Action.BURY, None, True),
]


@pytest.mark.parametrize(("failure", "attempts", "action", "delay", "spent"), TABLE,
                         ids=[f"{type(row[0]).__name__}-{row[1]}" for row in TABLE])
def test_decision_table(failure: BaseException, attempts: int, action: Action,
                        delay: float | None, spent: bool) -> None:
    decision = decide(failure, attempts, max_attempts=10)
    assert decision.action is action
    assert decision.counts_attempt is spent
    if delay is not None:
        assert decision.delay == pytest.approx(delay)


def test_backoff_grows_and_is_capped() -> None:
    delays = [decide(Unavailable(), n, max_attempts=100).delay for n in range(12)]
    assert delays[0] < delays[3] < delays[6]
    assert max(delays) <= 300 * 1.2
