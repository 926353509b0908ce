"""Security: secrets never reach the logs; a customer's data can be erased."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy import select

from bot.__main__ import main
from bot.app import App
from bot.db.models import Attachment, Customer, Message, OutboxItem, TgLink, Ticket
from bot.logs import RedactSecrets
from bot.sandbox.telegram_server import FakeTelegramServer
from bridges.local.models import LocalMessage, LocalTicket
from tests.bot.conftest import AGENT_CHAT, ANNA, IVAN, JANE, TOKEN, find, make_settings, running
from tests.bot.test_flow import open_ticket


async def test_a_full_run_logs_no_secret(tg: FakeTelegramServer, migrated_url: str,
                                         redis_url: str | None,
                                         caplog: pytest.LogCaptureFixture) -> None:
    secrets = [TOKEN, "hook-secret-value-1"]
    caplog.set_level(logging.DEBUG)
    settings = make_settings(tg, migrated_url, redis_url, log_level="DEBUG",
                             webhook_secret=secrets[1])
    async with running(settings):
        topic, _ = await open_ticket(tg, JANE, "Secrets test")
        tg.fail_next("sendMessage", 429, retry_after=1, chat_id=JANE)
        tg.fail_next("sendMessage", 502, chat_id=JANE)
        tg.user_sends_text(ANNA, AGENT_CHAT, "reply", thread_id=topic)
        await tg.wait_for(lambda s: find(s.sent_to(JANE), "reply"), timeout=20)
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert caplog.records, "nothing was logged: the test would prove nothing"
    for secret in secrets:
        assert secret not in logged


def test_the_redaction_filter_hides_secrets_in_messages_and_tracebacks() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "calling %s failed",
                               ("https://api.telegram.org/bot123:SECRET-TOKEN/getMe",), None)
    try:
        raise RuntimeError("token 123:SECRET-TOKEN rejected")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    RedactSecrets(["123:SECRET-TOKEN"]).filter(record)
    assert "SECRET-TOKEN" not in record.getMessage()
    assert record.exc_text is not None and "SECRET-TOKEN" not in record.exc_text


async def test_erase_customer(tg: FakeTelegramServer, app: App, migrated_url: str,
                              monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    topic, _ = await open_ticket(tg, IVAN, "Мой паспорт 4510 123456")
    tg.user_sends_photo(IVAN, IVAN, caption="скан паспорта", data=b"jpeg")
    tg.user_sends_text(ANNA, AGENT_CHAT, "Спасибо, Иван", thread_id=topic)
    await tg.wait_for(lambda s: find(s.sent_to(IVAN), "Спасибо, Иван"))
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT, topic), "скан паспорта"))
    await open_ticket(tg, JANE, "Jane stays")
    monkeypatch.setenv("DATABASE_URL", migrated_url)
    monkeypatch.setenv("PROVIDER", "local")
    assert await asyncio.to_thread(main, ["erase-customer", str(IVAN)]) == 0
    assert "erased" in capsys.readouterr().out
    async with app.sessionmaker() as session:
        ivan = await session.scalar(select(Customer).where(Customer.full_name == "(erased)"))
        assert ivan is not None and ivan.tg_user_id < 0 and ivan.username is None
        texts = list(await session.scalars(select(Message.text)))
        assert not any("паспорт" in t or "Иван" in t for t in texts)
        assert "Jane stays" in texts
        assert await session.scalar(select(Attachment.id)) is None
        subjects = list(await session.scalars(select(Ticket.subject)))
        assert "(erased)" in subjects and "Jane stays" in subjects
        desk = list(await session.scalars(select(LocalMessage.text)))
        assert not any("паспорт" in t for t in desk)
        assert "Jane stays" in desk
        desk_names = list(await session.scalars(select(LocalTicket.customer_name)))
        assert "Ivan" not in desk_names
        erased_tickets = list(await session.scalars(select(Ticket.id).where(
            Ticket.subject == "(erased)")))
        his = {f"c:{ivan.id}"} | {f"{kind}:{t}" for t in erased_tickets for kind in "ap"}
        lanes = set(await session.scalars(select(OutboxItem.lane)))
        assert not lanes & his
        assert await session.scalar(select(TgLink.id).where(TgLink.tg_chat_id == IVAN)) is None
    assert await asyncio.to_thread(main, ["erase-customer", "424242"]) == 1


async def test_files_over_20_mb_are_explained_and_the_message_still_goes(
    tg: FakeTelegramServer, migrated_url: str, redis_url: str | None
) -> None:
    from bot.db.session import create_engine
    from bridges.local import LocalDeskBridge

    class UploadingDesk(LocalDeskBridge):
        uploads_files = True  # like Omnidesk: the bot must download files first

    engine = create_engine(migrated_url)
    try:
        async with running(make_settings(tg, migrated_url, redis_url),
                           bridge=UploadingDesk(engine)) as app:
            tg.user_sends_document(JANE, JANE, file_name="video.mov", size=25 * 1024 * 1024,
                                   caption="Screen recording of the bug")
            await tg.wait_for(lambda s: find(s.sent_to(JANE), "larger than 20 MB"))
            card = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "Screen recording"))
            await tg.wait_for(lambda s: any(r["file_name"] == "video.mov"
                                            for r in s.sent_to(AGENT_CHAT, card["thread_id"])))

            async def desk_text() -> str | None:
                async with app.sessionmaker() as session:
                    return await session.scalar(select(LocalMessage.text))

            for _ in range(100):
                if await desk_text():
                    break
                await asyncio.sleep(0.05)
            text = await desk_text()
            assert text is not None and "Screen recording" in text and "20 MB" in text
    finally:
        await engine.dispose()
