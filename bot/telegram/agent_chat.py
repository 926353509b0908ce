"""The agent chat as the bot knows it now.

Its id can change (Telegram migrates a group to a supergroup), forum mode can
be switched on or off by an admin, the bot can lose the *Manage topics*
right or be removed. Handlers and the outbox share this one object, and the
bot updates it as it learns (a `my_chat_member` update, an error answer, the
`chat` of any update from the group).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class AgentChatProblem(enum.StrEnum):
    NO_TOPIC_RIGHTS = "no_topic_rights"  # cannot create topics: threading by replies
    NOT_A_MEMBER = "not_a_member"  # removed, or cannot post: everything waits


@dataclass(slots=True)
class AgentChat:
    chat_id: int
    forum: bool
    language: str
    problems: set[AgentChatProblem] = field(default_factory=set)

    @property
    def uses_topics(self) -> bool:
        """Tickets get topics (else they are threaded by replies to their card)."""
        return self.forum and AgentChatProblem.NO_TOPIC_RIGHTS not in self.problems

    @property
    def reachable(self) -> bool:
        return AgentChatProblem.NOT_A_MEMBER not in self.problems
