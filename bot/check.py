"""`deskbridge check`: does everything the bot needs work?

One line per fact, marked `[ok]`, `[!!]` (broken: the line says what to do)
or `[--]` (worth knowing, not a failure). The exit code is 0 only when no
line is `[!!]`: the token, the agent chat (a supergroup the bot can see, with
forum topics on, the bot an administrator allowed to manage topics and
delete and pin messages), inline mode where the provider has a knowledge base, the
database reachable and migrated, Redis when set, the webhook when set, and
the provider's credentials. Lines are in the operator's language.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramUnauthorizedError
from aiogram.types import ChatFullInfo, User, WebhookInfo

from bot.app import make_bot
from bot.config import Settings, environment
from bot.db.session import create_engine
from bot.i18n import gettext
from bot.problems import OperatorError, operator_language, shown
from bot.startup import check_redis, database_label, migration_state
from bridges.base import Capability
from bridges.registry import BridgeDeps, create_bridge

OK, FAIL, NOTE = "ok", "!!", "--"
ADMIN_STATUSES = ("administrator", "creator")


@dataclass
class Report:
    lang: str
    out: Callable[[str], None] = print
    failures: int = 0
    lines: list[str] = field(default_factory=list)

    def line(self, mark: str, key: str, **params: Any) -> None:
        self.raw(mark, gettext(self.lang, key, **params))

    def raw(self, mark: str, text: str) -> None:
        """A line in the words of someone else (the bridge's own report)."""
        if mark == FAIL:
            self.failures += 1
        self.lines.append(f"[{mark}] {text}")
        self.out(f"[{mark}] {text}")


def _reason(exc: BaseException) -> str:
    words = (getattr(exc, "message", None) or str(exc) or type(exc).__name__).strip()
    return words.splitlines()[0][:200]


async def check_telegram(bot: Bot, settings: Settings, report: Report) -> User | None:
    try:
        me = await bot.get_me(request_timeout=20)
    except TelegramUnauthorizedError:
        report.line(FAIL, "check.token_refused")
        return None
    except TelegramAPIError as exc:
        report.line(FAIL, "check.telegram_unreachable", url=settings.telegram_api_base,
                    reason=_reason(exc))
        return None
    report.line(OK, "check.token_ok", username=me.username or me.first_name, id=me.id,
                url=settings.telegram_api_base)
    return me


def check_webhook(info: WebhookInfo, settings: Settings, report: Report) -> None:
    pending = info.pending_update_count
    wanted = settings.webhook_url
    if not wanted:
        if info.url:
            report.line(NOTE, "check.webhook_unwanted", url=info.url, pending=pending)
        else:
            report.line(NOTE, "check.long_polling", pending=pending)
        return
    if not info.url:
        report.line(FAIL, "check.webhook_missing", url=wanted, pending=pending)
    elif info.url != wanted:
        report.line(FAIL, "check.webhook_other", registered=info.url, url=wanted)
    elif info.last_error_message:
        when = f"{info.last_error_date:%Y-%m-%d %H:%M} UTC" if info.last_error_date else "—"
        report.line(FAIL, "check.webhook_error", url=wanted, pending=pending, when=when,
                    error=info.last_error_message)
    else:
        report.line(OK, "check.webhook_ok", url=wanted, pending=pending)


async def check_agent_chat(bot: Bot, me: User, chat_id: int, report: Report) -> None:
    try:
        chat: ChatFullInfo = await bot.get_chat(chat_id, request_timeout=20)
    except TelegramAPIError as exc:
        report.line(FAIL, "check.chat_unreachable", chat_id=chat_id, reason=_reason(exc))
        return
    if chat.type != "supergroup":
        key = "check.chat_basic_group" if chat.type == "group" else "check.chat_not_group"
        report.line(FAIL, key, chat_id=chat_id, kind=chat.type)
        return
    report.line(OK, "check.chat_ok", title=chat.title or "", chat_id=chat_id)
    if chat.is_forum:
        report.line(OK, "check.forum_on")
    else:
        report.line(FAIL, "check.forum_off")
    try:
        member = await bot.get_chat_member(chat_id, me.id, request_timeout=20)
    except TelegramAPIError as exc:
        report.line(FAIL, "check.member_unknown", reason=_reason(exc))
        return
    if member.status not in ADMIN_STATUSES:
        report.line(FAIL, "check.not_admin", status=member.status)
        return
    report.line(OK, "check.admin")
    # Topics: one per ticket. Deleting: a password typed in the group is removed at
    # once. Pinning: each ticket's card is pinned in its topic.
    rights = (("can_manage_topics", "check.topics_ok", "check.topics_missing"),
              ("can_delete_messages", "check.delete_ok", "check.delete_missing"),
              ("can_pin_messages", "check.pin_ok", "check.pin_missing"))
    for name, ok_key, missing_key in rights:
        allowed = member.status == "creator" or bool(getattr(member, name, False))
        report.line(OK if allowed else FAIL, ok_key if allowed else missing_key)


async def check_database(settings: Settings, report: Report, *, migrate: bool,
                         ask: Callable[[str], bool] | None) -> bool:
    """True when the database is reachable and migrated (now, perhaps)."""
    url = settings.database_url
    label = database_label(url)
    try:
        current, heads, known = await migration_state(url)
    except OperatorError as exc:
        report.line(FAIL, "check.database_unreachable", url=label,
                    reason=exc.problems[0].params.get("reason", ""))
        return False
    if current in heads:
        report.line(OK, "check.database_ok", url=label, revision=current)
        return True
    if current is not None and current not in known:
        report.line(FAIL, "check.database_ahead", url=label, revision=current)
        return False
    question = gettext(report.lang, "check.migrate_question", url=label)
    if migrate or (ask is not None and ask(question)):
        from bot.db.migrate import upgrade

        try:
            await asyncio.to_thread(upgrade, url)
        except Exception as exc:
            report.line(FAIL, "check.migrate_failed", url=label, reason=_reason(exc))
            return False
        report.line(OK, "check.database_migrated", url=label)
        return True
    report.line(FAIL, "check.database_not_migrated", url=label)
    return False


async def check_provider(settings: Settings, report: Report, *, database_ready: bool
                         ) -> frozenset[Capability]:
    provider = settings.provider
    if provider == "local" and not database_ready:
        # The local desk is tables of that database: nothing to ask it yet.
        report.line(NOTE, "check.local_waits_for_database")
        return frozenset({Capability.KNOWLEDGE_BASE})
    engine = create_engine(settings.database_url)
    try:
        bridge = await create_bridge(provider, BridgeDeps(engine=engine, env=environment()))
        try:
            result = await bridge.check()
        finally:
            await bridge.aclose()
    except Exception as exc:
        report.line(FAIL, "check.provider_failed", provider=provider,
                    reason=f"{type(exc).__name__}: {_reason(exc)}")
        return frozenset()
    finally:
        await engine.dispose()
    for text in result.lines:
        if result.ok:
            report.raw(OK, text)
        else:
            report.line(FAIL, "check.provider_problem", text=text, prefix=provider.upper())
    capabilities = frozenset(bridge.capabilities)
    report.line(NOTE, "check.capabilities", provider=provider,
                capabilities=", ".join(sorted(c.value for c in capabilities)))
    return capabilities


def check_inline(me: User, capabilities: frozenset[Capability], report: Report) -> None:
    if me.supports_inline_queries:
        report.line(OK, "check.inline_on")
    elif Capability.KNOWLEDGE_BASE in capabilities:
        report.line(FAIL, "check.inline_off_kb", username=me.username or "")
    else:
        report.line(NOTE, "check.inline_off", username=me.username or "")


def _ask_on_terminal(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        return input(f"{question} ").strip().lower() in {"y", "yes", "д", "да"}
    except EOFError:
        return False


async def run_check(settings: Settings, *, migrate: bool = False,
                    ask: Callable[[str], bool] | None = _ask_on_terminal,
                    out: Callable[[str], None] = print) -> int:
    report = Report(operator_language(), out)
    bot = make_bot(settings)
    try:
        me = await check_telegram(bot, settings, report)
        if me is not None:
            try:
                check_webhook(await bot.get_webhook_info(request_timeout=20), settings, report)
            except TelegramAPIError as exc:
                report.line(FAIL, "check.telegram_unreachable", url=settings.telegram_api_base,
                            reason=_reason(exc))
            await check_agent_chat(bot, me, settings.agent_chat_id, report)
        ready = await check_database(settings, report, migrate=migrate, ask=ask)
        if settings.redis_url:
            redis_label = shown("REDIS_URL", settings.redis_url) or "REDIS_URL"
            try:
                await check_redis(settings.redis_url)
                report.line(OK, "check.redis_ok", url=redis_label)
            except OperatorError as exc:
                report.line(FAIL, "check.redis_unreachable", url=redis_label,
                            reason=exc.problems[0].params.get("reason", ""))
        else:
            report.line(NOTE, "check.redis_unset")
        capabilities = await check_provider(settings, report, database_ready=ready)
        if me is not None:
            check_inline(me, capabilities, report)
    finally:
        await bot.session.close()
    if report.failures:
        out(gettext(report.lang, "check.failed", count=report.failures))
        return 1
    out(gettext(report.lang, "check.all_good"))
    return 0
