"""Odd input: long captions, malformed events from a helpdesk."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sqlalchemy import select

from bot.app import App
from bot.db.models import PollCursor
from bot.db.session import create_engine
from bot.sandbox.telegram_server import FakeTelegramServer
from bridges.base import (
    AuthorKind,
    Changes,
    MessageAdded,
    RemoteMessage,
)
from bridges.local import LocalDeskBridge
from tests.bot.conftest import AGENT_CHAT, ANNA, JANE, find, make_settings, running
from tests.bot.test_flow import open_ticket


async def test_a_caption_over_1024_characters_is_sent_as_text(tg: FakeTelegramServer,
                                                               app: App) -> None:
    topic, _ = await open_ticket(tg, JANE, "Long caption")
    caption = "Шаги: " + " ".join(f"шаг {i}." for i in range(300))  # ~2,700 characters
    tg.user_sends_photo(ANNA, AGENT_CHAT, caption=caption[:1024], data=b"png", thread_id=topic)
    tg.user_sends_document(JANE, JANE, file_name="log.txt", data=b"x", caption=caption[:1024])
    await tg.wait_for(lambda s: any(r["media_type"] == "photo" for r in s.sent_to(JANE)))
    await tg.wait_for(lambda s: any(r["media_type"] == "document"
                                    for r in s.sent_to(AGENT_CHAT, topic)))
    # Text goes as text (up to 4,096), files without a caption: no caption limit is hit.
    for record in tg.sent:
        if record["media_type"]:
            assert len(record["text"] or "") <= 1024
    assert find(tg.sent_to(JANE), "шаг 10.")


class GarblingDesk(LocalDeskBridge):
    """The local desk, but one poll also returns events that make no sense."""

    garble = False

    async def fetch_changes(self, cursor: str | None) -> Changes:
        changes = await super().fetch_changes(cursor)
        if not self.garble:
            return changes
        self.garble = False
        broken: Sequence = [
            MessageAdded(RemoteMessage("x1", None, AuthorKind.AGENT, None)),  # type: ignore[arg-type]
            MessageAdded(None),  # type: ignore[arg-type]
            "not an event at all",
        ]
        return Changes([*broken, *changes.events], changes.cursor, changes.more)


async def test_malformed_provider_events_are_logged_and_skipped(
    tg: FakeTelegramServer, migrated_url: str, redis_url: str | None, caplog
) -> None:  # type: ignore[no-untyped-def]
    engine = create_engine(migrated_url)
    desk = GarblingDesk(engine)
    try:
        async with running(make_settings(tg, migrated_url, redis_url), bridge=desk) as app:
            await open_ticket(tg, JANE, "Garbled poll")
            async with app.sessionmaker() as session:
                from bot.db.models import Ticket

                remote_id = await session.scalar(select(Ticket.remote_ticket_id))
            from bridges.base import AgentIdentity

            await desk.post_agent_reply(str(remote_id), AgentIdentity("d", "Desk"),
                                        "The real answer")
            desk.garble = True
            await app.poll_provider()
            await tg.wait_for(lambda s: find(s.sent_to(JANE), "The real answer"))
            async with app.sessionmaker() as session:
                state = await session.get(PollCursor, "local")
                assert state is not None and state.last_error is None
    finally:
        await engine.dispose()
    assert "skipping an event" in caplog.text


async def test_a_poll_cut_off_between_chunks_imports_each_reply_once(
    tg: FakeTelegramServer, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big poll is committed a chunk at a time and the cursor moves with the
    last chunk: dying in between imports the batch again, each reply once."""
    from bot.db.models import Message, Ticket
    from bot.services import sync
    from bridges.base import AgentIdentity

    await open_ticket(tg, JANE, "Big batch")
    async with app.sessionmaker() as session:
        remote_id = str(await session.scalar(select(Ticket.remote_ticket_id)))
    answers = [f"answer {i:02d}" for i in range(sync.FIRST_IMPORT_CHUNK + 3)]
    for answer in answers:
        await app.bridge.post_agent_reply(remote_id, AgentIdentity("d", "Desk"), answer)

    advance = sync.SyncService._advance

    async def killed(self: sync.SyncService, *args: object) -> None:
        raise RuntimeError("the process died here")

    monkeypatch.setattr(sync.SyncService, "_advance", killed)
    with pytest.raises(RuntimeError):
        await app.sync.poll_once()

    async def imported() -> list[str]:
        async with app.sessionmaker() as session:
            return list(await session.scalars(
                select(Message.text).where(Message.text.startswith("answer "))))

    first = await imported()
    assert 0 < len(first) < len(answers)  # the first chunk was kept, the last was not
    assert len(set(first)) == len(first)
    monkeypatch.setattr(sync.SyncService, "_advance", advance)
    await app.sync.poll_once()  # the same batch again, from the old cursor
    assert sorted(await imported()) == answers  # each once
