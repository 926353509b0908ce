"""Who may act as an agent.

An agent is a member of the agent chat (and on the allow-list, when one is
configured). Membership is asked of Telegram (`getChatMember`) and cached
briefly; a message that arrives *in* the agent chat proves membership by
itself, so only the allow-list applies there.
"""

from __future__ import annotations

import time

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import BaseFilter
from aiogram.types import CallbackQuery, InlineQuery, Message, User

from bot.telegram.agent_chat import AgentChat

MEMBER_STATUSES = {"creator", "administrator", "member"}
CACHE_SECONDS = 60.0


class AgentAccess:
    def __init__(self, agent_chat: AgentChat, allowlist: list[int] | None = None) -> None:
        self._agent_chat = agent_chat  # its id follows a migration of the group
        self._allowlist = set(allowlist or ())
        self._cache: dict[int, tuple[float, bool]] = {}

    @property
    def agent_chat_id(self) -> int:
        return self._agent_chat.chat_id

    def allowed_by_list(self, user_id: int) -> bool:
        return not self._allowlist or user_id in self._allowlist

    async def is_agent(self, bot: Bot, user: User | None, *, in_agent_chat: bool = False
                       ) -> bool:
        if user is None or user.is_bot or not self.allowed_by_list(user.id):
            return False
        if in_agent_chat:
            return True
        cached = self._cache.get(user.id)
        now = time.monotonic()
        if cached and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        try:
            member = await bot.get_chat_member(self.agent_chat_id, user.id)
            is_member = member.status in MEMBER_STATUSES or (
                member.status == "restricted" and bool(getattr(member, "is_member", False)))
        except TelegramAPIError:
            is_member = False
        self._cache[user.id] = (now, is_member)
        return is_member


class InAgentChat(BaseFilter):
    async def __call__(self, event: Message | CallbackQuery, agent_access: AgentAccess) -> bool:
        message = event.message if isinstance(event, CallbackQuery) else event
        return message is not None and message.chat.id == agent_access.agent_chat_id


class IsAgent(BaseFilter):
    """Passes for agents; everything else falls through to the refusal handlers."""

    async def __call__(self, event: Message | CallbackQuery | InlineQuery, bot: Bot,
                       agent_access: AgentAccess) -> bool:
        message = event.message if isinstance(event, CallbackQuery) else (
            event if isinstance(event, Message) else None)
        in_chat = message is not None and message.chat.id == agent_access.agent_chat_id
        return await agent_access.is_agent(bot, event.from_user, in_agent_chat=in_chat)
