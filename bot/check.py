"""`deskbridge check`: what works with the current settings."""

from __future__ import annotations

from aiogram.exceptions import TelegramAPIError
from aiogram.types import WebhookInfo

from bot.app import make_bot
from bot.config import Settings, environment
from bot.db.session import create_engine
from bridges.registry import BridgeDeps, create_bridge


def webhook_line(info: WebhookInfo, settings: Settings) -> str:
    pending = f"{info.pending_update_count} pending update(s)"
    if not info.url:
        mode = "[!!]" if settings.webhook_url else "[--]"
        return f"{mode} no webhook registered (long polling); {pending}"
    line = f"[ok] webhook {info.url}; {pending}"
    if info.last_error_message:
        when = f" at {info.last_error_date:%Y-%m-%d %H:%M}" if info.last_error_date else ""
        line = line.replace("[ok]", "[!!]") + f"; last error{when}: {info.last_error_message}"
    return line


async def run_check(settings: Settings) -> int:
    ok = True
    bot = make_bot(settings)
    engine = create_engine(settings.database_url)
    try:
        try:
            me = await bot.get_me()
            print(f"[ok] Telegram: @{me.username} (id {me.id}) at {settings.telegram_api_base}")
            print(webhook_line(await bot.get_webhook_info(), settings))
            chat = await bot.get_chat(settings.agent_chat_id)
            print(f"[ok] agent chat: {chat.title!r} ({chat.id})")
            if chat.is_forum:
                print("[ok] forum topics are enabled: one topic per ticket")
            else:
                print("[--] forum topics are off: tickets are threaded by replies")
            member = await bot.get_chat_member(settings.agent_chat_id, me.id)
            can_manage = bool(getattr(member, "can_manage_topics", False))
            is_admin = member.status in {"administrator", "creator"}
            print(f"[{'ok' if is_admin else '!!'}] bot status in the agent chat: {member.status}")
            if chat.is_forum:
                ok &= can_manage
                print(f"[{'ok' if can_manage else '!!'}] can manage topics: {can_manage}")
        except TelegramAPIError as exc:
            ok = False
            print(f"[!!] Telegram: {exc}")
        try:
            bridge = await create_bridge(settings.provider, BridgeDeps(engine=engine,
                                                                       env=environment()))
            report = await bridge.check()
            await bridge.aclose()
            ok &= report.ok
            for line in report.lines:
                print(f"[{'ok' if report.ok else '!!'}] {settings.provider}: {line}")
            caps = ", ".join(sorted(c.value for c in bridge.capabilities))
            print(f"[--] {settings.provider} capabilities: {caps}")
        except Exception as exc:
            ok = False
            print(f"[!!] provider {settings.provider}: {type(exc).__name__}: {exc}")
    finally:
        await bot.session.close()
        await engine.dispose()
    print("all good" if ok else "some checks failed")
    return 0 if ok else 1
