"""Keeping `AgentChat` true: what the bot learns about the agent chat from
updates (`my_chat_member`, the `chat` of any message) and from answers
(403, "not enough rights", a migration), and what it tells people.

* The bot is demoted or loses *Manage topics*: new tickets are threaded by
  replies in the general topic, and the agents are told once how to fix it;
  topics come back when the right does.
* The bot is removed: nothing is sent to the chat (customers' messages are
  still taken and queued), `/healthz` answers 503 and the metric
  `deskbridge_agent_chat_ok` is 0, an error is logged; a probe every
  `PROBE_SECONDS` and the `my_chat_member` update of its return end it, and
  what waited is delivered.
* Telegram migrates the group to a supergroup: the new id is followed at
  once, kept in the database (it wins over AGENT_CHAT_ID at the next start
  while AGENT_CHAT_ID still names the old group) and the operator is asked
  to update AGENT_CHAT_ID.
* Forum mode switched on or off is seen in the next update from the group.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import (
    Chat,
    ChatMemberAdministrator,
    ChatMemberOwner,
    TelegramObject,
    Update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.models import BotState, utcnow
from bot.i18n import gettext
from bot.outbox import Kind, OutboxSignal, agent_chat_lane, enqueue
from bot.telegram.agent_chat import AgentChat, AgentChatProblem

log = logging.getLogger("deskbridge.agent_chat")

PROBE_SECONDS = 60.0
STATE_KEY = "agent_chat"


class AgentChatWatch:
    def __init__(self, agent_chat: AgentChat, sessionmaker: async_sessionmaker[AsyncSession],
                 signal: OutboxSignal, *, configured_chat_id: int) -> None:
        self.agent_chat = agent_chat
        self._sm = sessionmaker
        self._signal = signal
        self._configured = configured_chat_id

    # ------------------------------------------------------------ start

    async def load(self) -> None:
        """Follow a migration learnt before a restart, while AGENT_CHAT_ID
        still names the old group."""
        async with self._sm() as session:
            state = await session.get(BotState, STATE_KEY)
        if state is not None and state.value.get("migrated_from") == self._configured:
            self.agent_chat.chat_id = int(state.value["chat_id"])
            log.error("AGENT_CHAT_ID=%s was migrated by Telegram to %s: the bot uses %s; "
                      "set AGENT_CHAT_ID=%s", self._configured, self.agent_chat.chat_id,
                      self.agent_chat.chat_id, self.agent_chat.chat_id)

    # ------------------------------------------------------------ what answers say

    async def migrated(self, old_chat_id: int, new_chat_id: int) -> None:
        if old_chat_id != self.agent_chat.chat_id:
            return
        self.agent_chat.chat_id = new_chat_id
        log.error("Telegram migrated the agent chat %s to %s; the bot follows it. Set "
                  "AGENT_CHAT_ID=%s", old_chat_id, new_chat_id, new_chat_id)
        async with self._sm.begin() as session:
            state = await session.get(BotState, STATE_KEY)
            value = {"chat_id": new_chat_id, "migrated_from": self._configured}
            if state is None:
                session.add(BotState(key=STATE_KEY, value=value))
            else:
                state.value = value
                state.updated_at = utcnow()
            self._notice(session, "agent.chat_migrated", new_id=new_chat_id)
        self._signal.notify()

    async def unreachable(self, reason: str) -> None:
        """A 403 from the agent chat: the bot was removed or may not post."""
        if AgentChatProblem.NOT_A_MEMBER in self.agent_chat.problems:
            return
        self.agent_chat.problems.add(AgentChatProblem.NOT_A_MEMBER)
        log.error("the bot cannot post in the agent chat %s (%s): messages wait until an "
                  "admin adds it back", self.agent_chat.chat_id, reason)

    async def no_topic_rights(self) -> None:
        if AgentChatProblem.NO_TOPIC_RIGHTS in self.agent_chat.problems:
            return
        self.agent_chat.problems.add(AgentChatProblem.NO_TOPIC_RIGHTS)
        log.error("the bot may not create topics in the agent chat; tickets are threaded by "
                  "replies until it is given the Manage topics right")
        async with self._sm.begin() as session:
            self._notice(session, "agent.no_topic_rights")
        self._signal.notify()

    # ------------------------------------------------------------ what updates say

    async def saw_member_status(self, status: Any) -> None:
        """The bot's own membership changed (`my_chat_member`) or was read."""
        chat = self.agent_chat
        was_unreachable = not chat.reachable
        had_no_rights = AgentChatProblem.NO_TOPIC_RIGHTS in chat.problems
        if isinstance(status, ChatMemberOwner):
            can_post, can_topics = True, True
        elif isinstance(status, ChatMemberAdministrator):
            can_post, can_topics = True, bool(status.can_manage_topics)
        else:
            can_post = getattr(status, "status", "") in ("member", "restricted")
            can_topics = False
        if not can_post:
            await self.unreachable(f"the bot is {getattr(status, 'status', 'not a member')}")
            return
        chat.problems.discard(AgentChatProblem.NOT_A_MEMBER)
        if can_topics:
            chat.problems.discard(AgentChatProblem.NO_TOPIC_RIGHTS)
        elif chat.forum:
            await self.no_topic_rights()
        async with self._sm.begin() as session:
            if was_unreachable:
                log.warning("the bot can post in the agent chat again")
                self._notice(session, "agent.chat_restored")
            elif had_no_rights and can_topics and chat.forum:
                self._notice(session, "agent.topic_rights_back")
        self._signal.notify()

    def saw_chat(self, is_forum: bool | None) -> None:
        if is_forum is None or is_forum == self.agent_chat.forum:
            return
        log.warning("the agent chat's topics were switched %s", "on" if is_forum else "off")
        self.agent_chat.forum = is_forum

    async def probe(self, bot: Bot) -> None:
        """While the chat is unreachable: is the bot back?"""
        if self.agent_chat.reachable:
            return
        try:
            member = await bot.get_chat_member(self.agent_chat.chat_id, bot.id)
        except TelegramAPIError as exc:
            log.error("the agent chat %s is still unreachable: %s", self.agent_chat.chat_id, exc)
            return
        await self.saw_member_status(member)

    def _notice(self, session: AsyncSession, key: str, **params: Any) -> None:
        enqueue(session, Kind.AGENT_CHAT_NOTICE, agent_chat_lane(),
                {"html": "⚠️ " + gettext(self.agent_chat.language, key, **params)})


def _is_forum(chat: Chat) -> bool | None:
    """Telegram leaves `is_forum` out when it is false."""
    return bool(chat.is_forum) if chat.type == "supergroup" else None


class WatchAgentChat(BaseMiddleware):
    """Outer update middleware: the agent chat's `chat` and `my_chat_member`."""

    def __init__(self, watch: AgentChatWatch) -> None:
        self._watch = watch

    async def __call__(self, handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
                       event: TelegramObject, data: dict[str, Any]) -> Any:
        if isinstance(event, Update):
            chat_id = self._watch.agent_chat.chat_id
            member = event.my_chat_member
            if member is not None and member.chat.id == chat_id:
                self._watch.saw_chat(_is_forum(member.chat))
                await self._watch.saw_member_status(member.new_chat_member)
            message = event.message or event.edited_message
            if message is not None and message.chat.id == chat_id:
                self._watch.saw_chat(_is_forum(message.chat))
        return await handler(event, data)
