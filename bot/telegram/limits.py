"""Telegram's send limits as budgets: one process's own, or shared through Redis.

The Bot API FAQ's limits (DESIGN.md): about 30 messages a second overall;
about one a second in any one chat, private or group, with short bursts
tolerated; at most 20 a minute in one group. Telegram counts every call that
posts or changes something in a chat (topic creation and edits, message
edits, pins, reactions), not only new messages.

How each is kept:

* overall and private chats: a GCRA ("virtual scheduling") limiter, i.e. a
  token bucket kept as one timestamp, the theoretical arrival time;
* a group: a log of its sends in the last 60 s. A send may go when fewer than
  20 are in the log and the previous one is far enough back: one second while
  the log is light (fewer than `group_burst` sends), 60/20 = 3 s once it is
  not. So a quiet group answers at once, a busy one sends one every three
  seconds, and a saturated group uses all 20 of every minute and never a 21st;
* pauses after a 429, for one chat or for everything.

`take` books a slot only when every limit allows one now; otherwise it books
nothing and says how long to wait. Both budgets do the same arithmetic (the
Redis one in a Lua script, atomically, on Redis's clock), and the same table
of tests runs against both.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from redis.exceptions import RedisError

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("deskbridge.telegram")

GROUP_WINDOW_SECONDS = 60.0


def is_group(chat_id: int) -> bool:
    return chat_id < 0


@dataclass(frozen=True, slots=True)
class Limits:
    global_per_second: float = 30.0
    global_burst: int = 3  # sends above an even 1/30 s spacing, so jitter costs no slots
    chat_interval: float = 1.0
    # A private chat tolerates a short burst (Telegram's fake allows three):
    # two leave a message of room for network jitter, which a 429 would cost.
    chat_burst: int = 2
    group_per_minute: int = 20
    group_burst: int = 5  # sends at the one-a-second pace while a group's minute is light
    group_window: float = GROUP_WINDOW_SECONDS  # Telegram's minute (tests shrink it)

    @property
    def group_spacing(self) -> float:
        return self.group_window / self.group_per_minute

    @property
    def light_group_spacing(self) -> float:
        return min(self.chat_interval, self.group_spacing)


class Budget(Protocol):
    limits: Limits

    async def take(self, chat_id: int | None) -> float:
        """Book a send to `chat_id` (None: a call that counts only against the
        overall limit) and return 0, or book nothing and return the seconds to
        wait before asking again."""

    async def peek(self, chat_id: int) -> float:
        """Seconds until a send to `chat_id` could be booked (books nothing)."""

    async def pause(self, chat_id: int | None, seconds: float) -> None:
        """After a 429: nothing to `chat_id` (None: to anyone) for `seconds`."""

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class _Gcra:
    interval: float
    tolerance: float  # (burst - 1) × interval
    tat: float = 0.0

    def wait(self, now: float) -> float:
        return max(0.0, self.tat - self.tolerance - now)

    def book(self, now: float) -> None:
        self.tat = max(self.tat, now) + self.interval


@dataclass(slots=True)
class _GroupLog:
    limits: Limits
    sends: deque[float] = field(default_factory=deque)

    def wait(self, now: float) -> float:
        while self.sends and self.sends[0] <= now - self.limits.group_window:
            self.sends.popleft()
        if not self.sends:
            return 0.0
        spacing = (self.limits.light_group_spacing if len(self.sends) < self.limits.group_burst
                   else self.limits.group_spacing)
        waits = [self.sends[-1] + spacing - now]
        if len(self.sends) >= self.limits.group_per_minute:
            oldest_to_leave = self.sends[len(self.sends) - self.limits.group_per_minute]
            waits.append(oldest_to_leave + self.limits.group_window - now)
        return max(0.0, *waits)

    def book(self, now: float) -> None:
        self.sends.append(now)


class LocalBudget:
    """The budget of one process (no Redis): exact for a single process."""

    def __init__(self, limits: Limits | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits or Limits()
        self._clock = clock
        self._overall = _Gcra(1 / self.limits.global_per_second,
                              (self.limits.global_burst - 1) / self.limits.global_per_second)
        self._chats: dict[int, _Gcra | _GroupLog] = {}
        self._paused_until: dict[int | None, float] = {}

    def _chat(self, chat_id: int) -> _Gcra | _GroupLog:
        limiter = self._chats.get(chat_id)
        if limiter is None:
            limits = self.limits
            limiter = (_GroupLog(limits) if is_group(chat_id) else
                       _Gcra(limits.chat_interval, (limits.chat_burst - 1) * limits.chat_interval))
            self._chats[chat_id] = limiter
        return limiter

    def _wait(self, chat_id: int | None, now: float) -> float:
        waits = [self._overall.wait(now), self._paused_until.get(None, 0.0) - now]
        if chat_id is not None:
            waits += [self._chat(chat_id).wait(now), self._paused_until.get(chat_id, 0.0) - now]
        return max(0.0, *waits)

    async def take(self, chat_id: int | None) -> float:
        now = self._clock()
        wait = self._wait(chat_id, now)
        if wait > 0:
            return wait
        self._overall.book(now)
        if chat_id is not None:
            self._chat(chat_id).book(now)
        return 0.0

    async def peek(self, chat_id: int) -> float:
        return self._wait(chat_id, self._clock())

    async def pause(self, chat_id: int | None, seconds: float) -> None:
        until = self._clock() + seconds
        self._paused_until[chat_id] = max(self._paused_until.get(chat_id, 0.0), until)

    async def aclose(self) -> None:
        return None


# KEYS: overall TAT, overall pause, chat state (TAT or log), chat pause, group sequence.
# ARGV: book (1/0), chat kind (0 none, 1 private, 2 group), then the limits.
# Returns the wait in microseconds (0: booked). Redis's own clock keeps
# processes on different hosts in step.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local book = ARGV[1] == '1'
local kind = tonumber(ARGV[2])
local g_interval, g_tolerance = tonumber(ARGV[3]), tonumber(ARGV[4])
local c_interval, c_tolerance = tonumber(ARGV[5]), tonumber(ARGV[6])
local per_minute, burst = tonumber(ARGV[7]), tonumber(ARGV[8])
local light, heavy, window = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])

local function num(key) return tonumber(redis.call('GET', key) or '0') end
local wait = 0
local g_tat = num(KEYS[1])
wait = math.max(wait, g_tat - g_tolerance - now, num(KEYS[2]) - now)
local c_tat = 0
if kind == 1 then
  c_tat = num(KEYS[3])
  wait = math.max(wait, c_tat - c_tolerance - now, num(KEYS[4]) - now)
elseif kind == 2 then
  wait = math.max(wait, num(KEYS[4]) - now)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - window)
  local count = redis.call('ZCARD', KEYS[3])
  if count > 0 then
    local last = tonumber(redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')[2])
    local spacing = heavy
    if count < burst then spacing = light end
    wait = math.max(wait, last + spacing - now)
    if count >= per_minute then
      local leaving = redis.call('ZRANGE', KEYS[3], count - per_minute, count - per_minute,
                                 'WITHSCORES')
      wait = math.max(wait, tonumber(leaving[2]) + window - now)
    end
  end
end
if wait > 0 or not book then
  return math.ceil(wait * 1e6)
end
local ttl = math.ceil((window + 5) * 1000)
redis.call('SET', KEYS[1], tostring(math.max(g_tat, now) + g_interval), 'PX', ttl)
if kind == 1 then
  redis.call('SET', KEYS[3], tostring(math.max(c_tat, now) + c_interval), 'PX', ttl)
elseif kind == 2 then
  local seq = redis.call('INCR', KEYS[5])
  redis.call('ZADD', KEYS[3], now, tostring(now) .. ':' .. seq)
  redis.call('PEXPIRE', KEYS[3], ttl)
  redis.call('PEXPIRE', KEYS[5], ttl)
end
return 0
"""

_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local until_ = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > current then
  redis.call('SET', KEYS[1], tostring(until_), 'PX', math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
end
return 0
"""


class RedisBudget:
    """The budget shared by every process of one bot through Redis: three
    processes together stay within the limits with no hand tuning."""

    def __init__(self, redis: Redis, prefix: str, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        # While Redis cannot be reached this process keeps its own budget (at
        # worst several processes overshoot for a while, which 429s correct):
        # sending goes on instead of failing with Redis.
        self._fallback = LocalBudget(self.limits)
        self._redis_down = False
        self._redis = redis
        self._prefix = prefix
        self._take = redis.register_script(_TAKE)
        self._pause = redis.register_script(_PAUSE)

    @classmethod
    def from_url(cls, url: str, bot_id: int, limits: Limits | None = None) -> RedisBudget:
        import redis.asyncio as redis

        return cls(redis.from_url(url), f"deskbridge:pace:{bot_id}:", limits)

    def _keys(self, chat_id: int | None) -> list[str]:
        p = self._prefix
        chat = "none" if chat_id is None else str(chat_id)
        return [f"{p}all:tat", f"{p}all:pause", f"{p}chat:{chat}", f"{p}chat:{chat}:pause",
                f"{p}chat:{chat}:seq"]

    async def _call(self, chat_id: int | None, book: bool) -> float:
        try:
            wait = await self._shared(chat_id, book)
        except (RedisError, OSError) as exc:
            if not self._redis_down:
                log.error("Redis is unreachable (%s): Telegram pacing is per process until "
                          "it is back", exc)
                self._redis_down = True
            if book:
                return await self._fallback.take(chat_id)
            return await self._fallback.peek(chat_id) if chat_id is not None else 0.0
        if self._redis_down:
            log.warning("Redis is back: Telegram pacing is shared again")
            self._redis_down = False
        return wait

    async def _shared(self, chat_id: int | None, book: bool) -> float:
        limits = self.limits
        kind = 0 if chat_id is None else 2 if is_group(chat_id) else 1
        micros = await self._take(keys=self._keys(chat_id), args=[
            "1" if book else "0", kind,
            repr(1 / limits.global_per_second),
            repr((limits.global_burst - 1) / limits.global_per_second),
            repr(limits.chat_interval), repr((limits.chat_burst - 1) * limits.chat_interval),
            limits.group_per_minute, limits.group_burst,
            repr(limits.light_group_spacing), repr(limits.group_spacing),
            repr(limits.group_window),
        ])
        return int(micros) / 1e6

    async def take(self, chat_id: int | None) -> float:
        return await self._call(chat_id, True)

    async def peek(self, chat_id: int) -> float:
        return await self._call(chat_id, False)

    async def pause(self, chat_id: int | None, seconds: float) -> None:
        await self._fallback.pause(chat_id, seconds)
        key = self._keys(chat_id)[3] if chat_id is not None else self._keys(None)[1]
        try:
            await self._pause(keys=[key], args=[repr(max(0.0, seconds))])
        except (RedisError, OSError) as exc:
            log.warning("could not share a 429 pause through Redis: %s", exc)

    async def aclose(self) -> None:
        await self._redis.aclose()

