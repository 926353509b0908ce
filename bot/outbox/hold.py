"""The helpdesk refuses our credentials: hold its work, tell people, probe.

A rotated or mistyped API key is the most common incident there is. Nothing
can succeed until a person fixes the setting, so nothing should be spent or
lost meanwhile: the rows toward the provider are held (never a dead letter,
no attempt spent), the provider's lanes pause except for one probe a minute,
the agents get one notice in the agent chat's general topic naming the
setting to check, `/healthz` answers 503 and `deskbridge_provider_held` is 1.
The first call that succeeds again (a probe, or a poll) ends the hold, and
every held row goes out in its original order. The poller reports here too.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.models import utcnow
from bot.i18n import gettext
from bot.outbox.payloads import Kind
from bot.outbox.queue import OutboxSignal, agent_chat_lane, enqueue
from bot.services import render
from bot.telegram.agent_chat import AgentChat

log = logging.getLogger("deskbridge.hold")

PROBE_SECONDS = 60.0

# What the operator should check, when the bridge's error does not say.
CREDENTIAL_SETTINGS = {
    "omnidesk": "OMNIDESK_STAFF_EMAIL, OMNIDESK_API_KEY",
    "zenlix": "ZENLIX_LOGIN, ZENLIX_PASSWORD",
    "plusofon": "PLUSOFON_TOKEN (or PLUSOFON_EMAIL and PLUSOFON_PASSWORD)",
    "iqstore": "IQSTORE_SERVICE_TOKEN, IQSTORE_INTEGRATION_CREDENTIALS",
}


@dataclass(slots=True)
class HoldState:
    reason: str
    setting: str
    since: float


class ProviderHold:
    def __init__(self, provider: str, sessionmaker: async_sessionmaker[AsyncSession],
                 signal: OutboxSignal, agent_chat: AgentChat,
                 probe_seconds: float = PROBE_SECONDS) -> None:
        self.provider = provider
        self._sm = sessionmaker
        self._signal = signal
        self._agent_chat = agent_chat
        self._probe_seconds = probe_seconds
        self.state: HoldState | None = None
        self._last_probe = 0.0

    @property
    def held(self) -> bool:
        return self.state is not None

    def take_probe(self) -> bool:
        """While held: may one provider row go now, as the probe?"""
        now = time.monotonic()
        if now - self._last_probe < self._probe_seconds:
            return False
        self._last_probe = now
        return True

    async def start(self, exc: BaseException) -> None:
        if self.state is not None:
            return
        setting = getattr(exc, "setting", None) or CREDENTIAL_SETTINGS.get(self.provider, "")
        self.state = HoldState(reason=str(exc) or type(exc).__name__, setting=setting,
                               since=time.monotonic())
        self._last_probe = time.monotonic()
        log.error("%s refuses our credentials (%s): its work is held until it accepts them; "
                  "check %s", self.provider, self.state.reason, setting or "the settings")
        await self._notice("agent.provider_held", provider=self.provider, setting=setting)

    @property
    def probe_seconds(self) -> float:
        return self._probe_seconds

    async def end(self) -> bool:
        """End a hold; True if there was one (held rows may go now)."""
        if self.state is None:
            return False
        held_for = time.monotonic() - self.state.since
        self.state = None
        log.warning("%s accepts our credentials again after %.0fs: held work goes out",
                    self.provider, held_for)
        await self._notice("agent.provider_restored", provider=self.provider)
        self._signal.notify()
        return True

    async def _notice(self, key: str, **params: str) -> None:
        text = gettext(self._agent_chat.language, key,
                       **{k: render.escape(v) for k, v in params.items()})
        async with self._sm.begin() as session:
            enqueue(session, Kind.AGENT_CHAT_NOTICE, agent_chat_lane(),
                    {"html": "⚠️ " + text}, key=f"{key}:{self.provider}:{utcnow():%Y%m%d%H%M}")
        self._signal.notify()
