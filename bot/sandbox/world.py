"""Who is who in the demo's sandbox Telegram: the bot, three customers (one
Russian-speaking, one whose language the bot does not speak), two agents and
their forum supergroup."""

from __future__ import annotations

from dataclasses import dataclass

from bot.sandbox.telegram_server import FakeTelegramServer

# Not a secret: it only opens the sandbox server on loopback.
TOKEN = "4242424242:sandbox-demo-token-not-a-secret"
BOT_USERNAME = "deskbridge_demo_bot"
AGENT_CHAT = -1004242424242
AGENT_CHAT_TITLE = "Support team"


@dataclass(frozen=True, slots=True)
class Person:
    id: int
    first_name: str
    last_name: str | None
    username: str | None
    language_code: str
    phone: str  # what "share my contact" sends

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}" if self.last_name else self.first_name


CUSTOMERS = (
    Person(1001, "Jane", "Cooper", "jane_cooper", "en", "+44 20 7946 0018"),
    Person(1002, "Иван", "Петров", "ivan_petrov", "ru", "+7 916 555-01-02"),
    # German: the bot speaks Russian and English, so she gets English.
    Person(1003, "Lena", "Weber", None, "de", "+49 30 901820"),
)
AGENTS = (
    Person(501, "Anna", "Smirnova", "anna_support", "ru", "+7 916 555-05-01"),
    Person(502, "Boris", "Keller", "boris_support", "en", "+44 20 7946 0502"),
)


def populate(server: FakeTelegramServer) -> None:
    """Add the demo's people and the agents' forum supergroup to `server`."""
    server.bot_user["username"] = BOT_USERNAME
    for person in (*CUSTOMERS, *AGENTS):
        user = server.add_user(person.id, person.first_name, person.username,
                               person.language_code)
        if person.last_name:
            user["last_name"] = person.last_name
    server.add_supergroup(AGENT_CHAT, AGENT_CHAT_TITLE, is_forum=True,
                          members=[agent.id for agent in AGENTS], owner_id=AGENTS[0].id)
