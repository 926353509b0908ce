"""The bot with PROVIDER=zenlix, end to end: the fake Bot API server and the
fake Zenlix (bot/sandbox/zenlix.py), both over real HTTP; the bridge is built
by the application from the environment, as in production."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from bot.db.models import Agent, Ticket
from bot.sandbox.telegram_server import FakeTelegramServer
from bot.sandbox.zenlix import FakeZenlix
from tests.bot.conftest import (
    AGENT_CHAT,
    ANNA,
    BORIS,
    IVAN,
    JANE,
    callback_data_of,
    find,
    make_settings,
    running,
)
from tests.bot.test_agents import card_now
from tests.bot.test_delivery import count
from tests.bridges.harness_zenlix import (
    AGENT_LOGIN,
    AGENT_PASSWORD,
    ZenlixWorld,
    populate,
    zenlix_env,
)


@pytest.fixture
async def zenlix(monkeypatch: pytest.MonkeyPatch
                 ) -> AsyncIterator[tuple[FakeZenlix, ZenlixWorld]]:
    async with FakeZenlix() as fake:
        world = populate(fake)
        # Quiet tickets are read at least every other poll: quick tests.
        for name, value in zenlix_env(fake, world, ZENLIX_IDLE_MAX_CYCLES="2").items():
            monkeypatch.setenv(name, value)
        yield fake, world


async def open_ticket(tg: FakeTelegramServer, customer: int, text: str,
                      department: str) -> tuple[int, dict[str, Any]]:
    """The customer writes and picks a Zenlix department (`get_unit_list`);
    returns the ticket's topic and card."""
    tg.user_sends_text(customer, customer, text)
    question = await tg.wait_for(lambda s: next(
        (r for r in s.sent_to(customer) if department in str(r.get("reply_markup"))), None))
    tg.user_presses(customer, (customer, question["message_id"]),
                    callback_data_of(question, department))
    subject = text.splitlines()[0]
    card = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), subject))
    return card["thread_id"], card


async def test_a_conversation_through_zenlix(
    tg: FakeTelegramServer, migrated_url: str, redis_url: str | None,
    zenlix: tuple[FakeZenlix, ZenlixWorld],
) -> None:
    fake, world = zenlix
    ivan = fake.add_client("Petrov Ivan")  # found by his full name, in Zenlix's word order
    tg.users[IVAN]["last_name"] = "Petrov"
    async with running(make_settings(tg, migrated_url, redis_url, provider="zenlix")) as app:
        topic, card = await open_ticket(tg, IVAN, "Не работает VPN\nс самого утра", "Billing")
        [ticket] = fake.tickets
        assert (ticket.client, ticket.unit, ticket.subj) == (ivan, 2, "1")
        assert ticket.text == "Не работает VPN\nс самого утра"
        assert tg.calls("createForumTopic")[0]["name"].startswith(f"🟢 #{ticket.id} ")

        # Typed in the Zenlix UI: the customer and the topic get it.
        fake.comment_as(world.olga, ticket.hash, "Перезагрузите роутер, пожалуйста")
        reply = await tg.wait_for(lambda s: find(s.sent_to(IVAN), "Перезагрузите роутер"))
        assert "Olga Petrova" in reply["text"]
        await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "Перезагрузите роутер"))

        # A Telegram agent without a linked account: the service account, prefixed.
        tg.user_sends_text(ANNA, AGENT_CHAT, "Проверьте кабель", thread_id=topic)
        await tg.wait_for(lambda s: find(s.sent_to(IVAN), "Проверьте кабель"))
        await tg.wait_for(lambda _: any(c.text == "Anna: Проверьте кабель"
                                        and c.author == world.service for c in fake.comments))

        # Emoji and a long text: stored as a strict install accepts, in order.
        tg.user_sends_text(IVAN, IVAN, "Спасибо 👍 заработало")
        long_text = " ".join(f"строка{n}" for n in range(700))
        tg.user_sends_text(IVAN, IVAN, long_text)
        await tg.wait_for(lambda _: fake.comments_of(ticket.hash)[-1].text.endswith("строка699"))
        texts = [c.text for c in fake.comments_of(ticket.hash)]
        assert texts[2] == "Ivan Petrov (Telegram): Спасибо [thumbs up sign] заработало"
        parts = texts[3:]
        assert [text.split(") ", 1)[0] for text in parts] == [
            f"Ivan Petrov (Telegram): ({n}/{len(parts)}" for n in range(1, len(parts) + 1)]
        assert "".join(text.split(") ", 1)[1] for text in parts) == long_text
        await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "Спасибо 👍"))
        await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "строка699"))

        # Take, close, reopen from the topic.
        tg.user_sends_text(ANNA, AGENT_CHAT, "/take", thread_id=topic)
        await tg.wait_for(lambda _: ticket.lock_by == world.service)
        await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "is yours"))
        # Anna is unlinked: Zenlix holds the lock for the service account, and
        # the next poll names that account, so the card shows Anna only until
        # then (whether a card edit falls in between depends on the group's
        # queue): an assignee is what it must show.
        await tg.wait_for(lambda s: "Assignee: nobody" not in card_now(s, card)["text"])
        tg.user_sends_text(ANNA, AGENT_CHAT, "/close", thread_id=topic)
        await tg.wait_for(lambda _: ticket.ok)
        await tg.wait_for(lambda s: find(s.sent_to(IVAN), "закрыто"))
        tg.user_sends_text(ANNA, AGENT_CHAT, "/reopen", thread_id=topic)
        await tg.wait_for(lambda _: not ticket.ok)
        assert ticket.lock_by == world.service  # ticket_no_ok keeps it with whoever reopened

        # Several polls later, nothing came back twice, and nothing of ours as new.
        for _ in range(4):
            await app.poll_provider()
        await app.outbox.drain(timeout=3)
        assert count(tg, IVAN, "Перезагрузите роутер") == 1
        assert count(tg, IVAN, "Проверьте кабель") == 1
        assert count(tg, AGENT_CHAT, "Проверьте кабель") == 0  # Anna's own message is there
        assert count(tg, AGENT_CHAT, "Спасибо 👍") == 1
        assert count(tg, AGENT_CHAT, "строка699") == 1
        assert count(tg, AGENT_CHAT, "[thumbs up sign]") == 0
        assert not find(tg.sent_to(IVAN), "строка1 ")
        assert len(fake.comments_of(ticket.hash)) == 3 + len(parts)  # nothing posted twice
        async with app.sessionmaker() as session:
            stored = await session.scalar(select(Ticket))
            assert stored is not None and stored.status == "open"


async def test_linked_agents_and_changes_made_in_zenlix(
    tg: FakeTelegramServer, migrated_url: str, redis_url: str | None,
    zenlix: tuple[FakeZenlix, ZenlixWorld],
) -> None:
    fake, world = zenlix
    async with running(make_settings(tg, migrated_url, redis_url, provider="zenlix")) as app:
        # "Jane" alone matches nobody: the default client, with her name on top.
        topic, card = await open_ticket(tg, JANE, "Cannot log in\nsince the update", "Support")
        [ticket] = fake.tickets
        assert ticket.client == world.guest
        assert ticket.text == "Jane (Telegram)\nCannot log in\nsince the update"

        # Boris links his Zenlix account (asking for it in Telegram is the bot's part).
        tg.user_sends_text(BORIS, AGENT_CHAT, "/help")
        await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "/take"))
        linked = await app.bridge.find_agent(AGENT_LOGIN, AGENT_PASSWORD)
        assert linked is not None
        async with app.sessionmaker.begin() as session:
            boris = await session.scalar(select(Agent).where(Agent.tg_user_id == BORIS))
            assert boris is not None
            boris.remote_agent_id = linked.remote_agent_id
        tg.user_sends_text(BORIS, AGENT_CHAT, "Try resetting your password", thread_id=topic)
        await tg.wait_for(lambda s: find(s.sent_to(JANE), "Try resetting your password"))
        await tg.wait_for(lambda _: any(c.text == "Try resetting your password"
                                        and c.author == world.boris for c in fake.comments))

        # Olga takes the ticket and closes it in the Zenlix UI.
        fake.lock_as(world.olga, ticket.hash)
        await tg.wait_for(lambda s: "Assignee: Olga Petrova" in card_now(s, card)["text"])
        fake.close_as(world.olga, ticket.hash)
        await tg.wait_for(lambda s: find(s.sent_to(JANE), "is closed"))
        await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "Closed in the helpdesk"))

        # Boris, an ordinary Zenlix user, may not reopen Olga's ticket: a clear
        # refusal in the topic, and the bot's state follows Zenlix again.
        tg.user_sends_text(BORIS, AGENT_CHAT, "/reopen", thread_id=topic)
        refusal = await tg.wait_for(
            lambda s: find(s.sent_to(AGENT_CHAT, topic), "Could not deliver"))
        assert "The helpdesk refused it" in refusal["text"]
        assert "ticket_no_ok" not in refusal["text"]
        assert ticket.ok

        async def status() -> str | None:
            async with app.sessionmaker() as session:
                return await session.scalar(select(Ticket.status))

        for _ in range(50):
            if await status() == "closed":
                break
            await app.poll_provider()
        assert await status() == "closed"
