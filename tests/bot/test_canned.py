"""/canned in the agent chat: stored locally and, with the local desk, as its
knowledge base."""

from __future__ import annotations

from sqlalchemy import select

from bot.app import App
from bot.db.models import Agent, CannedReply
from bot.sandbox.telegram_server import FakeTelegramServer
from bridges.local.bridge import LocalDeskBridge
from tests.bot.conftest import AGENT_CHAT, ANNA, BORIS, OUTSIDER, find


async def command(tg: FakeTelegramServer, text: str, needle: str, user: int = ANNA
                  ) -> dict:
    tg.user_sends_text(user, AGENT_CHAT, text)
    return await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT)[-3:], needle))


async def test_add_list_delete(tg: FakeTelegramServer, app: App) -> None:
    bridge = app.bridge
    assert isinstance(bridge, LocalDeskBridge)
    await command(tg, "/canned add Password reset | Open Settings → Security.\nThen Reset.",
                  "saved; customers find it too")
    await command(tg, "/canned add #Escalation | Call the on-duty admin: 1234", "staff only",
                  user=BORIS)
    async with app.sessionmaker() as session:
        rows = list(await session.scalars(select(CannedReply).order_by(CannedReply.id)))
        anna = await session.scalar(select(Agent.id).where(Agent.tg_user_id == ANNA))
    assert [(r.title, r.public) for r in rows] == [("Password reset", True),
                                                    ("Escalation", False)]
    assert rows[0].text == "Open Settings → Security.\nThen Reset."
    assert rows[0].created_by_agent_id == anna
    # The local desk's knowledge base is made of them, public or staff-only alike.
    articles = {a.remote_id: a for a in await bridge.list_articles()}
    assert {(articles[r.remote_article_id or ""].title, articles[r.remote_article_id or ""]
             .public) for r in rows} == {("Password reset", True), ("Escalation", False)}

    listing = await command(tg, "/canned list", "Canned replies: 2")
    assert "Password reset" in listing["text"] and "Escalation · staff only" in listing["text"]
    assert "@deskbridge_test_bot" in listing["text"]

    await command(tg, f"/canned del {rows[1].id}", "deleted")
    assert [a.title for a in await bridge.list_articles()] == ["Password reset"]
    await command(tg, f"/canned del {rows[1].id}", f"no canned reply {rows[1].id}")
    await command(tg, "/canned add Title without text", "Usage:")
    await command(tg, "/canned frobnicate", "Usage:")
    await command(tg, "/canned add  | only text", "Usage:")
    async with app.sessionmaker() as session:
        assert len(list(await session.scalars(select(CannedReply)))) == 1


async def test_only_agents_manage_canned_replies(tg: FakeTelegramServer, app: App) -> None:
    tg.user_sends_text(OUTSIDER, OUTSIDER, "/canned add Spam | buy now")
    await tg.wait_for(lambda s: find(s.sent_to(OUTSIDER), "agents only"))
    tg.user_sends_text(ANNA, ANNA, "/canned list")  # an agent, but not in the agent chat
    await tg.wait_for(lambda s: find(s.sent_to(ANNA), "чате агентов"))  # Anna reads Russian
    async with app.sessionmaker() as session:
        assert await session.scalar(select(CannedReply.id)) is None
