"""A rotated API key: the helpdesk refuses our credentials for longer than
every attempt of the ordinary retry path would last. Customers keep writing;
nothing becomes a dead letter; the agents are told once; when the key is
right again every message arrives once, in order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select

from bot.app import App
from bot.db.models import OutboxItem
from bot.db.session import create_engine
from bot.sandbox.omnidesk import FakeOmnidesk
from bot.sandbox.telegram_server import FakeTelegramServer
from bridges.registry import BridgeDeps, create_bridge
from tests.bot.conftest import (
    AGENT_CHAT,
    IVAN,
    callback_data_of,
    eventually,
    find,
    make_settings,
    running,
)

CHANNEL = "cch7"
SENT = 6


@pytest.fixture
async def desk() -> AsyncIterator[FakeOmnidesk]:
    async with FakeOmnidesk() as desk:
        desk.add_channel(CHANNEL)
        yield desk


@contextlib.asynccontextmanager
async def omnidesk_bot(tg: FakeTelegramServer, url: str, redis_url: str | None,
                       desk: FakeOmnidesk) -> AsyncIterator[App]:
    engine = create_engine(url)
    try:
        bridge = await create_bridge("omnidesk", BridgeDeps(engine=engine,
                                                            env=desk.env(channel=CHANNEL)))
        # Two attempts would make a dead letter within a second or two of
        # ordinary retries; the hold must outlast that.
        settings = make_settings(tg, url, redis_url, provider="omnidesk",
                                 outbox_max_attempts=2, provider_hold_probe_seconds=0.5)
        async with running(settings, bridge=bridge) as app:
            yield app
    finally:
        await engine.dispose()


async def _count(app: App, *where: object) -> int:
    async with app.sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(OutboxItem)
                                    .where(*where)) or 0


@pytest.mark.parametrize(("refused", "setting"), [("key", "OMNIDESK_API_KEY"),
                                                  ("email", "OMNIDESK_STAFF_EMAIL")])
async def test_refused_credentials_hold_everything_until_they_are_right_again(
        tg: FakeTelegramServer, migrated_url: str, redis_url: str | None,
        desk: FakeOmnidesk, refused: str, setting: str) -> None:
    """A rotated API key (401), or the API's staff member switched off (a
    wrong staff e-mail: 403)."""
    async with omnidesk_bot(tg, migrated_url, redis_url, desk) as app:
        tg.user_sends_text(IVAN, IVAN, "Printer on fire")
        await eventually(lambda: _as(len(desk.store.cases) == 1))
        right_key = desk.api_key
        staff = desk.store.staff[desk.api_staff_id]
        if refused == "key":
            desk.api_key = "rotated-by-someone"
        else:
            staff["active"] = False
        for n in range(SENT):
            tg.user_sends_text(IVAN, IVAN, f"update {n}")
            await asyncio.sleep(0.3)
        notice = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), setting))
        assert notice["thread_id"] is None  # the general topic
        await asyncio.sleep(4)  # far past two attempts with backoff
        assert await _count(app, OutboxItem.status == "dead") == 0
        async with httpx.AsyncClient() as client:
            health = await client.get(f"http://{app.settings.http_listen}/healthz")
            metrics = (await client.get(f"http://{app.settings.http_listen}/metrics")).text
        assert health.status_code == 503
        assert 'deskbridge_provider_held{provider="omnidesk"} 1.0' in metrics
        assert desk.rejected_auth <= 20  # probes, not a storm

        desk.api_key, staff["active"] = right_key, True
        await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "accepts"), timeout=15)

        def posted() -> list[str]:
            [case] = desk.store.cases.values()
            return [m["content"] for m in desk.store.messages.get(case["case_id"], [])
                    if m["content"].startswith("update")]

        texts = await eventually(lambda: _as(posted() if len(posted()) >= SENT else None),
                                 timeout=15)
        assert texts == [f"update {n}" for n in range(SENT)]  # once each, in order
        assert await _count(app, OutboxItem.status == "dead") == 0
        notices = [r for r in tg.sent_to(AGENT_CHAT) if setting in (r["text"] or "")]
        assert len(notices) == 1
        print(f"\ncredentials refused ({refused}): sent={SENT} held=all "
              f"delivered={len(texts)} lost=0 duplicated=0 refused calls={desk.rejected_auth}")


async def _as(value: object) -> object:
    return value


async def test_plusofon_token_refused_holds_everything_until_it_is_accepted_again(
        tg: FakeTelegramServer, migrated_url: str, redis_url: str | None) -> None:
    from bot.sandbox.plusofon import FakePlusofon

    async with FakePlusofon() as plusofon:
        env = plusofon.env(token=True)
        engine = create_engine(migrated_url)
        try:
            bridge = await create_bridge("plusofon", BridgeDeps(engine=engine, env=env))
            settings = make_settings(tg, migrated_url, redis_url, provider="plusofon",
                                     outbox_max_attempts=2, provider_hold_probe_seconds=0.5)
            async with running(settings, bridge=bridge) as app:
                tg.user_sends_text(IVAN, IVAN, "Number does not ring")
                ticket = await eventually(
                    lambda: _as(plusofon.ticket_by_subject("Number does not ring")))
                plusofon.expire_tokens()  # the token was revoked in Plusofon's cabinet
                for n in range(4):
                    tg.user_sends_text(IVAN, IVAN, f"still silent {n}")
                    await asyncio.sleep(0.3)
                await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "PLUSOFON_TOKEN"))
                await asyncio.sleep(3)
                assert await _count(app, OutboxItem.status == "dead") == 0
                plusofon._tokens.add(env["PLUSOFON_TOKEN"])  # a new token, as the operator sets

                def posted() -> list[str]:
                    return [t for t in ticket.post_texts() if t.startswith("still silent")]

                texts = await eventually(lambda: _as(posted() if len(posted()) >= 4 else None),
                                         timeout=15)
                assert texts == [f"still silent {n}" for n in range(4)]
                assert await _count(app, OutboxItem.status == "dead") == 0
        finally:
            await engine.dispose()


async def test_zenlix_password_changed_holds_everything_until_it_is_right_again(
        tg: FakeTelegramServer, migrated_url: str, redis_url: str | None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.sandbox.zenlix import FakeZenlix
    from tests.bridges.harness_zenlix import populate, zenlix_env

    async with FakeZenlix() as fake:
        world = populate(fake)
        for name, value in zenlix_env(fake, world, ZENLIX_IDLE_MAX_CYCLES="2").items():
            monkeypatch.setenv(name, value)
        fake.add_client("Ivan")
        settings = make_settings(tg, migrated_url, redis_url, provider="zenlix",
                                 outbox_max_attempts=2, provider_hold_probe_seconds=0.5)
        async with running(settings) as app:
            tg.user_sends_text(IVAN, IVAN, "VPN is down")
            question = await tg.wait_for(lambda s: next(
                (r for r in s.sent_to(IVAN) if "Billing" in str(r.get("reply_markup"))), None))
            tg.user_presses(IVAN, (IVAN, question["message_id"]),
                            callback_data_of(question, "Billing"))
            await eventually(lambda: _as(len(fake.tickets) == 1))
            [ticket] = fake.tickets
            service = fake.users[world.service]
            right, service.password = service.password, "changed-by-an-admin"
            fake.revoke_keys()
            for n in range(4):
                tg.user_sends_text(IVAN, IVAN, f"still down {n}")
                await asyncio.sleep(0.3)
            await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "ZENLIX_PASSWORD"))
            await asyncio.sleep(3)
            assert await _count(app, OutboxItem.status == "dead") == 0
            service.password = right

            def posted() -> list[str]:  # the comments as the bridge wrote them, in order
                return [f"still down {n}" for c in fake.comments_of(ticket.hash)
                        for n in range(4) if f"still down {n}" in c.text]

            texts = await eventually(lambda: _as(posted() if len(posted()) >= 4 else None),
                                     timeout=15)
            assert texts == [f"still down {n}" for n in range(4)]
            assert await _count(app, OutboxItem.status == "dead") == 0
