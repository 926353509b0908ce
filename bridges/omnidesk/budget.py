"""The API budget: what Omnidesk says is left, and how fast polling may spend it.

Omnidesk allows 500 requests per hour per active staff member (at least 1000
per account); newer accounts count per minute. Every response carries the
remaining budget in `api_calls_left`, newer ones also `rate_limit_per_minute`
and `retry_after` (providers/omnidesk.md, "Rate limit").

Pacing policy (what `PollPacer` enforces on `fetch_changes`):

* Outgoing work (new tickets, replies, notes, updates) is never paced by the
  bridge: it is what people wait for. A reserve of the window (a tenth of it,
  at least `MIN_RESERVE` calls) is kept for it by polling less.
* Polling earns credit at the rate that spreads what is left above the
  reserve evenly over what remains of the current window:
  `(api_calls_left - reserve) / seconds to the window's end`. The document
  does not say when a window starts, so the bridge takes it to start when it
  first sees the budget, and again whenever `api_calls_left` jumps up (a
  refill). A window can only have started at or before the moment it is
  first seen, so the assumed end is never earlier than the real one and
  polling never spends faster than an even spread over the true remainder:
  it cannot run the budget down to zero. The less is left, the slower it
  polls; the refill speeds it up again.
* Credit is capped at one full poll cycle (`burst`), or a twentieth of what is
  left above the reserve when that is more, and never above what is left
  above the reserve: a quiet spell cannot be saved up into a storm on a tight
  budget, and a generous one does not slow a backlog.
* At or below the reserve it still probes once per `probe_seconds` (5 minutes
  on hourly accounts, 5 seconds on per-minute ones), and as soon as the
  assumed window is over, only to see the refill; after a rate-limit answer
  it waits `retry_after` (or one probe interval).
* `fetch_changes` takes a credit for each call: with none for its first call
  it raises `RateLimited(retry_after)`; later in a cycle it stops early and
  returns what it has with `more=True`. After a cycle cut short that way it
  waits until the credit covers the cases it saw waiting (up to
  `AMORTISED_CYCLE` calls), so that one listing serves several reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bridges.http import retry_after

HOUR = 3600.0
MINUTE = 60.0
RESERVE_SHARE = 0.1
MIN_RESERVE = 5
BURST_SHARE = 0.05
REFILL_SHARE = 0.05  # a rise of this share of the window (2 calls at least) is a refill


@dataclass(slots=True)
class ApiBudget:
    """The budget as the last response reported it."""

    calls_left: int | None = None
    per_minute: int | None = None  # `rate_limit_per_minute`: a per-minute account
    retry_after: float | None = None
    # The most ever seen left: the window's size on hourly accounts, which do
    # not report their limit.
    peak_calls_left: int = 0
    # When the current window is taken to have started (see the module's policy).
    window_started_at: float | None = None

    def observe(self, headers: Mapping[str, str], now: float) -> None:
        per_minute = _number(headers.get("rate_limit_per_minute"))
        if per_minute is not None and per_minute > 0:
            self.per_minute = int(per_minute)
        calls_left = _number(headers.get("api_calls_left"))
        if calls_left is not None:
            left = int(calls_left)
            previous = self.calls_left
            refill = max(2.0, REFILL_SHARE * max(self.peak_calls_left, left))
            if previous is None or self.window_started_at is None or left >= previous + refill:
                self.window_started_at = now
            self.calls_left = left
            self.peak_calls_left = max(self.peak_calls_left, left)
        self.retry_after = retry_after(headers)

    @property
    def known(self) -> bool:
        return self.calls_left is not None

    @property
    def window_seconds(self) -> float:
        return MINUTE if self.per_minute else HOUR

    @property
    def reserve(self) -> int:
        size = self.per_minute or self.peak_calls_left
        return max(MIN_RESERVE, math.ceil(size * RESERVE_SHARE))

    @property
    def spendable(self) -> int:
        """What is left above the reserve."""
        return max(0, (self.calls_left or 0) - self.reserve)

    def window_number(self, now: float) -> int | None:
        """Which assumed window `now` falls in, counted from the last refill."""
        if self.window_started_at is None:
            return None
        return int((now - self.window_started_at) // self.window_seconds)

    def seconds_to_window_end(self, now: float) -> float:
        window = self.window_seconds
        started = self.window_started_at if self.window_started_at is not None else now
        return window - (now - started) % window

    def poll_rate(self, now: float) -> float:
        """Calls per second polling may spend now (see the module's policy)."""
        probe = 1.0 / probe_seconds(self.window_seconds)
        return max(self.spendable / max(1.0, self.seconds_to_window_end(now)), probe)

    def describe(self) -> str:
        if self.calls_left is None:
            return "api_calls_left: not reported yet"
        window = f"{self.per_minute}/minute" if self.per_minute else "per hour"
        return f"api_calls_left: {self.calls_left} ({window}; reserve {self.reserve})"


def probe_seconds(window_seconds: float) -> float:
    return window_seconds / 12 if window_seconds >= HOUR else 5.0


class PollPacer:
    """Credit for the poller's calls, earned at `ApiBudget.poll_rate`."""

    def __init__(self, budget: ApiBudget, clock: Callable[[], float], *, burst: float) -> None:
        self._budget = budget
        self._clock = clock
        self.min_burst = burst
        self._credit = burst
        self._refilled_at = clock()
        self._blocked_until = 0.0
        self._window: int | None = None
        self._window_started_at: float | None = None
        # The assumed window is over and no call has shown the refill yet.
        self.probe_due = False

    @property
    def burst(self) -> float:
        """The most credit there can be."""
        if not self._budget.known:
            return self.min_burst
        spendable = self._budget.spendable
        return max(1.0, min(spendable, max(self.min_burst, spendable * BURST_SHARE)))

    def available(self) -> float:
        """Credit now; nothing is spent."""
        self._refill()
        return self._credit

    def spend(self, calls: float) -> None:
        self._refill()
        self._credit -= calls
        if calls:
            self.probe_due = False

    def block(self, retry_after: float | None) -> None:
        """The API said "rate limited": no polling until it refills."""
        now = self._clock()
        wait = retry_after if retry_after else probe_seconds(self._budget.window_seconds)
        self._blocked_until = max(self._blocked_until, now + wait)
        self._credit = min(self._credit, 0.0)
        self._refilled_at = now

    def seconds_until_credit(self, calls: float = 1.0) -> float:
        """How long until `calls` calls are allowed (at today's rate)."""
        now = self._clock()
        calls = min(calls, self.burst)
        if now < self._blocked_until:
            return self._blocked_until - now + max(0.0, calls - self._credit) / self._rate(now)
        return max(0.0, calls - self.available()) / self._rate(now)

    def _rate(self, now: float) -> float:
        return self._budget.poll_rate(now) if self._budget.known else math.inf

    def _refill(self) -> None:
        now = self._clock()
        if now < self._blocked_until:
            self._refilled_at = now
            return
        started = self._budget.window_started_at
        if started is not None and started != self._window_started_at:
            # The first report of the budget, or a refill: a full cycle of it.
            self._window_started_at = started
            self._credit = max(self._credit, self.burst)
        window = self._budget.window_number(now)
        if window != self._window:
            if self._window is not None and window:
                self._credit = max(self._credit, 1.0)  # the window is over: look
                self.probe_due = True
            self._window = window
        since = max(self._refilled_at, self._blocked_until)
        elapsed = max(0.0, now - since)
        rate = self._rate(now)
        earned = self.burst if math.isinf(rate) else elapsed * rate
        self._credit = min(self.burst, self._credit + earned)
        self._refilled_at = now


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None
