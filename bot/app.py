"""The composition root: settings → engine, HTTP clients, bridge, services,
dispatcher and scheduler, built once and handed down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from signal import SIGINT, SIGTERM
from typing import Any

import httpx
from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramAPIError
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.fsm.strategy import FSMStrategy
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot import handlers
from bot.config import Settings, environment
from bot.db.models import OutboxItem, utcnow
from bot.db.session import create_engine, create_sessionmaker
from bot.filters import AgentAccess
from bot.leader import LeaderLock
from bot.menus import register_commands
from bot.middlewares import RetryWhileDatabaseDown
from bot.outbox import OutboxSignal
from bot.outbox.dead_letters import DeadLetters
from bot.outbox.dispatcher import OutboxDispatcher
from bot.outbox.hold import ProviderHold
from bot.outbox.provider import ProviderDeliveries
from bot.outbox.store import OutboxStore
from bot.outbox.telegram import TelegramDeliveries
from bot.services import render
from bot.services.bans import BanService
from bot.services.edits import EditService
from bot.services.knowledge import KnowledgeService
from bot.services.satisfaction import SatisfactionService
from bot.services.sla import SlaPolicy, SlaReport, SlaService
from bot.services.stats import StatsService
from bot.services.sync import SyncService
from bot.services.tickets import TicketService
from bot.startup import listen_error
from bot.telegram.agent_chat import AgentChat
from bot.telegram.agent_chat_watch import PROBE_SECONDS, AgentChatWatch, WatchAgentChat
from bot.telegram.limits import Budget, Limits, LocalBudget, RedisBudget
from bot.telegram.pacer import TelegramPacer
from bot.telegram.session import PacedRequests, TelegramSession
from bot.telegram.updates import UpdateLoop
from bot.web import Metrics, start_http
from bridges.base import HelpdeskBridge
from bridges.errors import BridgeError, RateLimited
from bridges.registry import BridgeDeps, create_bridge

log = logging.getLogger("deskbridge")

DONE_OUTBOX_RETENTION = timedelta(days=7)
JOB_SHUTDOWN_SECONDS = 20.0
MAX_POLL_ROUNDS = 20  # follow-up polls in one job while the bridge says `more`


@dataclass
class App:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    bot: Bot
    dispatcher: Dispatcher
    bridge: HelpdeskBridge
    tickets: TicketService
    sync: SyncService
    outbox: OutboxDispatcher
    scheduler: AsyncIOScheduler
    signal: OutboxSignal
    agent_chat: AgentChat
    http: httpx.AsyncClient
    metrics: Metrics
    leader: LeaderLock
    sla: SlaService
    pacer: TelegramPacer
    updates: UpdateLoop
    watch: AgentChatWatch
    hold: ProviderHold
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _jobs: set[asyncio.Task[Any]] = field(default_factory=set)

    async def poll_provider(self) -> None:
        """The scheduled poll (by the leader only); follows up at once while
        the bridge has more."""
        if not await self.leader.ensure():
            return
        if self.hold.held and not self.hold.take_probe():
            return  # refused credentials: one probe a minute (bot.outbox.hold)
        for _ in range(MAX_POLL_ROUNDS):
            try:
                report = await self.sync.poll_once()
            except RateLimited as exc:
                # The bridge paces itself against the provider's budget: a skipped
                # cycle is the plan working, not a failure.
                log.debug("polling %s deferred by its budget: %s", self.settings.provider, exc)
                return
            except Exception as exc:
                if isinstance(exc, BridgeError) and exc.held:
                    await self.hold.start(exc)  # refused credentials (bot.outbox.hold)
                else:
                    log.warning("polling %s failed: %s", self.settings.provider, exc)
                return
            if await self.hold.end():
                await self.outbox.store.release_held()
            if not report.more:
                return

    async def housekeeping(self) -> None:
        async with self.sessionmaker.begin() as session:
            await session.execute(delete(OutboxItem).where(
                OutboxItem.status == "done",
                OutboxItem.delivered_at < utcnow() - DONE_OUTBOX_RETENTION))
        purged = await DeadLetters(self.sessionmaker).purge(
            timedelta(days=self.settings.outbox_dead_retention_days))
        if purged:
            log.info("purged %s dead letters older than %s days", purged,
                     self.settings.outbox_dead_retention_days)

    async def check_sla(self, now: datetime | None = None) -> SlaReport | None:
        """The scheduled SLA pass: reminders and auto-close. Every process may
        run it: rows are claimed with SKIP LOCKED (see bot.services.sla)."""
        try:
            return await self.sla.run(now)
        except Exception:
            log.exception("the SLA check failed")
            return None

    def _tracked(self, job: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        """A scheduled job whose run a shutdown waits for (instead of leaving
        it to be cancelled mid-transaction, with a traceback in the log)."""
        async def run(*args: Any) -> Any:
            task = asyncio.current_task()
            assert task is not None
            self._jobs.add(task)
            try:
                return await job(*args)
            finally:
                self._jobs.discard(task)

        return run

    def schedule(self) -> None:
        self.scheduler.add_job(
            self._tracked(self.poll_provider), "interval",
            seconds=self.settings.poll_interval_seconds, id="poll", max_instances=1,
            coalesce=True, next_run_time=_now())
        self.scheduler.add_job(
            self._tracked(self.check_sla), "interval",
            seconds=self.settings.sla_check_interval_seconds, id="sla", max_instances=1,
            coalesce=True)
        self.scheduler.add_job(self._tracked(self.housekeeping), "interval", hours=1,
                               id="housekeeping", max_instances=1, coalesce=True)
        self.scheduler.add_job(self._tracked(self.watch.probe), "interval", args=[self.bot],
                               seconds=PROBE_SECONDS, id="agent-chat-probe", max_instances=1,
                               coalesce=True)

    @contextlib.asynccontextmanager
    async def background(self) -> AsyncIterator[None]:
        """Outbox delivery, the scheduler and the health server, for as long
        as the bot receives updates (by long polling or webhook)."""
        # The health server first: a busy port stops the start before anything runs.
        http = await self._start_http() if self.settings.http_listen else None
        await register_commands(self.bot, self.agent_chat.chat_id,
                                self.settings.agent_language, self.bridge.capabilities)
        if not self.leader.uses_database:
            await self.outbox.release_all_claims()  # ours, from before a crash
        self._stop.clear()
        delivery = asyncio.create_task(self.outbox.run(self._stop), name="outbox")
        self.schedule()
        self.scheduler.start()
        try:
            yield
        finally:
            self._stop.set()
            self.signal.notify()
            self.scheduler.shutdown(wait=False)
            if self._jobs:  # a poll under way finishes (its import commits or rolls back)
                await asyncio.wait(set(self._jobs), timeout=JOB_SHUTDOWN_SECONDS)
            await delivery
            await self.leader.release()
            if http is not None:
                await http.cleanup()

    async def _start_http(self) -> web.AppRunner:
        try:
            return await start_http(self)
        except OSError as exc:
            raise listen_error("HTTP_LISTEN", self.settings.http_listen, exc) from None

    def announce_started(self) -> None:
        """Logged once the bot receives updates, never before."""
        log.info("deskbridge started: provider=%s, agent chat %s (%s), %s",
                 self.settings.provider, self.settings.agent_chat_id,
                 "forum topics" if self.agent_chat.forum else "reply threads",
                 "webhook" if self.settings.webhook_url else "long polling")

    async def run_polling(self, *, handle_signals: bool = True) -> None:
        """Long polling (bot.telegram.updates): the next getUpdates, which
        confirms a batch to Telegram, is only sent once every update of the
        batch is committed, so a crash never loses one, and one handed out
        again is recognised by its message id."""
        async with self.background():
            await self.bot.delete_webhook(drop_pending_updates=False)
            self.announce_started()
            if handle_signals:
                loop = asyncio.get_running_loop()
                for signum in (SIGINT, SIGTERM):
                    loop.add_signal_handler(signum, self.updates.stop)
            await self.updates.run()

    def stop_polling(self) -> None:
        self.updates.stop()

    async def run_webhook(self, stop: asyncio.Event) -> None:
        """Webhook mode until `stop` is set (see bot.webhook)."""
        from bot.webhook import serve_webhook

        async with self.background():
            await serve_webhook(self, stop)

    async def aclose(self) -> None:
        await self.bridge.aclose()
        await self.http.aclose()
        await self.bot.session.close()
        await self.pacer.budget.aclose()
        if self.dispatcher.storage is not None:
            await self.dispatcher.storage.close()
        await self.engine.dispose()


def _now() -> datetime:
    return datetime.now(UTC)


def make_budget(settings: Settings) -> Budget:
    """Telegram's limits: this process's own, or shared by every process through Redis."""
    limits = Limits(global_per_second=settings.telegram_global_rate,
                    chat_interval=settings.telegram_chat_interval,
                    group_per_minute=settings.telegram_group_per_minute)
    if settings.redis_url:
        return RedisBudget.from_url(settings.redis_url, settings.bot_id, limits)
    return LocalBudget(limits)


def make_bot(settings: Settings, pacer: TelegramPacer | None = None,
             metrics: Metrics | None = None,
             on_migrate: Callable[[int, int], Awaitable[None]] | None = None) -> Bot:
    """The bot, whose every sending call waits on `pacer` (the one send path)."""
    session = TelegramSession(api=TelegramAPIServer.from_base(settings.telegram_api_base))
    if pacer is not None:
        on_429 = (lambda method, retry_after: metrics.telegram_429.inc()) if metrics else None
        session.middleware(PacedRequests(pacer, on_429, on_migrate))
    return Bot(
        settings.telegram_bot_token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(parse_mode="HTML", link_preview_is_disabled=True),
    )


def make_storage(settings: Settings) -> BaseStorage:
    if settings.redis_url:
        from aiogram.fsm.storage.redis import RedisStorage

        return RedisStorage.from_url(settings.redis_url)
    return MemoryStorage()


async def detect_forum(bot: Bot, chat_id: int) -> bool:
    try:
        chat = await bot.get_chat(chat_id)
    except TelegramAPIError as exc:
        log.error("cannot read the agent chat %s (%s); threading by replies", chat_id, exc)
        return False
    return bool(chat.is_forum)


async def build_app(
    settings: Settings,
    *,
    bridge: HelpdeskBridge | None = None,
    forum: bool | None = None,
) -> App:
    render.set_timezone(settings.timezone)
    engine = create_engine(settings.database_url, inline_sqlite=True)
    sessionmaker = create_sessionmaker(engine)
    http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0))
    if bridge is None:
        bridge = await create_bridge(settings.provider, BridgeDeps(
            engine=engine, env=environment()))
    metrics = Metrics()
    pacer = TelegramPacer(make_budget(settings))

    async def follow_migration(old_chat_id: int, new_chat_id: int) -> None:
        await watch.migrated(old_chat_id, new_chat_id)

    bot = make_bot(settings, pacer, metrics, follow_migration)
    signal = OutboxSignal()
    agent_chat = AgentChat(settings.agent_chat_id, False, settings.agent_language)
    watch = AgentChatWatch(agent_chat, sessionmaker, signal,
                           configured_chat_id=settings.agent_chat_id)
    await watch.load()
    agent_chat.forum = (await detect_forum(bot, agent_chat.chat_id)) if forum is None else forum
    sla_policy = SlaPolicy.from_settings(settings)
    tickets = TicketService(sessionmaker, bridge, signal, provider=settings.provider,
                            sla_policy=sla_policy,
                            messages_per_minute=settings.customer_messages_per_minute)
    sync = SyncService(sessionmaker, bridge, signal, provider=settings.provider,
                       sla_policy=sla_policy)
    sla = SlaService(sessionmaker, signal, sla_policy, agent_chat_id=agent_chat.chat_id,
                     forum=agent_chat.forum, language=settings.agent_language)

    async def fetch_url(url: str) -> bytes:
        response = await http.get(url)
        response.raise_for_status()
        return response.content

    store = OutboxStore(sessionmaker, lease_seconds=settings.outbox_lease_seconds)
    telegram = TelegramDeliveries(store, bot, pacer, watch, bridge.capabilities, signal,
                                  file_fetcher=fetch_url)
    provider = ProviderDeliveries(store, bridge, bot)
    hold = ProviderHold(settings.provider, sessionmaker, signal, agent_chat,
                        probe_seconds=settings.provider_hold_probe_seconds)
    outbox = OutboxDispatcher(store, {**telegram.handlers(), **provider.handlers()}, signal,
                              pacer, agent_chat,
                              max_attempts=settings.outbox_max_attempts,
                              provider_timeout=settings.provider_timeout_seconds,
                              metrics=metrics, hold=hold)
    dispatcher = Dispatcher(storage=make_storage(settings),
                            fsm_strategy=FSMStrategy.USER_IN_TOPIC)
    # Inside aiogram's error middleware, so an outage is retried, not reported.
    dispatcher.update.outer_middleware(RetryWhileDatabaseDown())
    dispatcher.update.outer_middleware(WatchAgentChat(watch))
    dispatcher.include_router(handlers.setup())
    dispatcher["tickets"] = tickets
    dispatcher["settings"] = settings
    dispatcher["agent_chat"] = agent_chat
    dispatcher["told_read_only"] = set()  # topics told their helpdesk takes no replies
    dispatcher["agent_access"] = AgentAccess(agent_chat, settings.agent_allowlist)
    dispatcher["knowledge"] = KnowledgeService(sessionmaker, bridge)
    dispatcher["satisfaction"] = SatisfactionService(sessionmaker, bridge, signal,
                                                     agent_language=settings.agent_language)
    dispatcher["edits"] = EditService(sessionmaker, bridge, signal,
                                      agent_language=settings.agent_language)
    dispatcher["stats"] = StatsService(sessionmaker, render.timezone())
    dispatcher["bans"] = BanService(sessionmaker)
    dispatcher["dead_letters"] = DeadLetters(sessionmaker)
    dispatcher["outbox_signal"] = signal
    scheduler = AsyncIOScheduler()
    return App(settings=settings, engine=engine, sessionmaker=sessionmaker, bot=bot,
               dispatcher=dispatcher, bridge=bridge, tickets=tickets, sync=sync, outbox=outbox,
               scheduler=scheduler, signal=signal, agent_chat=agent_chat, http=http,
               metrics=metrics, leader=LeaderLock(engine, f"deskbridge-poll-{settings.provider}"),
               sla=sla, pacer=pacer, updates=UpdateLoop(dispatcher, bot), watch=watch,
               hold=hold)
