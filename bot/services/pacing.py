"""Telegram pacing: stay under the Bot API limits instead of collecting 429s.

Limits (DESIGN.md, Telegram's bot FAQ): about 30 messages per second overall,
about one per second to one private chat, 20 per minute to one group. The 20
per minute of the agent group are shared by every topic in it.

A group is paced by a token bucket of `GROUP_BURST` tokens refilled at
(20 - burst) per minute: never more than 20 messages in any 60 seconds, yet
sends are spread out (one every four seconds under load) instead of 20 at
once followed by a minute of silence. Under load the outbox merges the
pending texts of a topic into the next send, so a busy group falls behind by
seconds, not minutes.

`delay_for` and `record` are called back to back with no await between them
(the caller then sleeps the delay), so concurrent lanes of one process book
consecutive slots and never overshoot.
"""

from __future__ import annotations

import time
from collections.abc import Callable

GROUP_WINDOW_SECONDS = 60.0
GROUP_BURST = 5
GLOBAL_CATCH_UP_SECONDS = 0.1  # at 30/s: at most 3 sends above an even spacing


def is_group(chat_id: int) -> bool:
    return chat_id < 0


class TelegramPacer:
    def __init__(
        self,
        *,
        global_rate: float = 30.0,
        chat_interval: float = 1.0,
        group_per_minute: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._global_interval = 1.0 / global_rate
        self._chat_interval = chat_interval
        self._group_burst = min(GROUP_BURST, max(1, group_per_minute // 2))
        self._group_rate = (group_per_minute - self._group_burst) / GROUP_WINDOW_SECONDS
        self._clock = clock
        self._global_next = 0.0
        self._chat_next: dict[int, float] = {}
        self._group_tokens: dict[int, tuple[float, float]] = {}  # chat → (tokens, as of)
        self._paused_until: dict[int | None, float] = {}

    def delay_for(self, chat_id: int) -> float:
        """Seconds until a message to `chat_id` may go; 0 means now."""
        now = self._clock()
        waits = [
            self._global_next - now,
            self._paused_until.get(None, 0.0) - now,
            self._paused_until.get(chat_id, 0.0) - now,
        ]
        if is_group(chat_id):
            tokens = self._tokens(chat_id, now)
            if tokens < 1:
                waits.append((1 - tokens) / self._group_rate)
        else:
            waits.append(self._chat_next.get(chat_id, 0.0) - now)
        return max(0.0, *waits)

    def record(self, chat_id: int, delay: float = 0.0) -> None:
        """Book the slot `delay` seconds from now (what `delay_for` said), so
        that sends waiting concurrently queue up behind each other instead
        of all waking to the same slot."""
        now = self._clock()
        at = now + delay
        # The overall budget is taken in turn, not at `at`: a group message
        # booked seconds ahead must not hold every other chat back until then.
        # A send that ran late may use the slots it missed, up to
        # GLOBAL_CATCH_UP_SECONDS' worth, so that jitter does not lower the
        # average below the limit (Telegram counts ~30 a second, not a gap).
        self._global_next = max(self._global_next, now - GLOBAL_CATCH_UP_SECONDS
                                ) + self._global_interval
        if is_group(chat_id):
            # Tokens may go below zero: that is a slot booked in the future.
            self._group_tokens[chat_id] = (self._tokens(chat_id, now) - 1, now)
        else:
            self._chat_next[chat_id] = at + self._chat_interval

    def group_budget(self, chat_id: int) -> int:
        """Sends a group can take right now without waiting."""
        return max(0, int(self._tokens(chat_id, self._clock())))

    def pause(self, chat_id: int | None, seconds: float) -> None:
        """After a 429: nothing to `chat_id` (None: to anyone) for `seconds`."""
        until = self._clock() + seconds
        self._paused_until[chat_id] = max(self._paused_until.get(chat_id, 0.0), until)

    def _tokens(self, chat_id: int, now: float) -> float:
        tokens, as_of = self._group_tokens.get(chat_id, (float(self._group_burst), now))
        return min(float(self._group_burst), tokens + (now - as_of) * self._group_rate)
