"""`deskbridge` (or `python -m bot`): run, init, migrate, check, outbox list|replay,
erase-customer, demo."""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata

from bot.config import DatabaseSettings, Settings, environment
from bot.db.session import create_engine, create_sessionmaker
from bot.logs import setup_logging
from bot.problems import OperatorError, report
from bot.sandbox import cli as demo_cli  # argparse only: the sandbox loads when used
from bot.startup import (
    check_provider_settings,
    database_errors,
    ensure_migrated,
    load_provider,
    load_settings,
    preflight,
    settings_hint,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deskbridge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"deskbridge {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    from bot.init import add_arguments as add_init_arguments

    add_init_arguments(commands.add_parser(
        "init", help="set up: check the token, find the agent chat, write .env"))
    commands.add_parser("run", help="apply migrations, then run the bot (long polling)")
    commands.add_parser("migrate", help="apply database migrations")
    check = commands.add_parser("check", help="check everything the bot needs; exit code 0 "
                                              "only when all of it works")
    check.add_argument("--migrate", action="store_true",
                       help="apply missing database migrations instead of only reporting them")
    erase = commands.add_parser("erase-customer",
                                help="delete a customer's personal data (by Telegram id)")
    erase.add_argument("tg_user_id", type=int)
    outbox = commands.add_parser("outbox", help="dead letters")
    outbox_commands = outbox.add_subparsers(dest="outbox_command", required=True)
    outbox_commands.add_parser("list", help="list dead letters")
    show = outbox_commands.add_parser("show", help="a dead letter's payload and last error")
    show.add_argument("ids", nargs="+", type=int, help="row ids")
    replay = outbox_commands.add_parser("replay", help="deliver dead letters again")
    replay.add_argument("ids", nargs="*", type=int, help="row ids (default: all dead letters)")
    discard = outbox_commands.add_parser("discard", help="drop dead letters for good")
    discard.add_argument("ids", nargs="+", type=int, help="row ids")
    demo_cli.add_arguments(commands.add_parser(
        "demo", help="try deskbridge in the browser: a sandbox Telegram, nothing to configure"))
    return parser


def _version() -> str:
    try:
        return metadata.version("deskbridge")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _command(args)
    except OperatorError as exc:
        # One line per problem, in the operator's language; no traceback.
        print(report(exc), file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


def _command(args: argparse.Namespace) -> int:
    if args.command == "demo":
        return demo_cli.run(args)
    if args.command == "init":
        from bot.init import run_init

        return run_init(args)
    if args.command == "migrate":
        from bot.db import migrate as migrations

        url = _database_url()
        setup_logging("INFO")
        with database_errors(url):
            migrations.upgrade(url)
        print("database is up to date")
        return 0
    if args.command == "erase-customer":
        url, provider = _database_url(), load_provider()
        return asyncio.run(_erase(url, args.tg_user_id, provider))
    if args.command == "outbox":
        url = _database_url()
        return asyncio.run(_outbox(url, args.outbox_command, getattr(args, "ids", [])))

    settings = _settings()
    env = environment()
    asyncio.run(check_provider_settings(settings.provider, env))
    setup_logging(settings.log_level, secrets=_secrets(settings), fmt=settings.log_format)
    if args.command == "check":
        from bot.check import run_check

        return asyncio.run(run_check(settings, migrate=args.migrate))
    # Migrations run in a child process: Alembic and what it loads would
    # otherwise stay resident for the bot's whole life (~15 MB). The child
    # prints its own one-line error.
    migrated = subprocess.run([sys.executable, "-m", "bot", "migrate"],
                              stdout=subprocess.DEVNULL, check=False)
    if migrated.returncode:
        return migrated.returncode
    return asyncio.run(_run(settings))


def _database_url() -> str:
    try:
        return load_settings(DatabaseSettings).database_url
    except OperatorError as exc:
        exc.problems.append(settings_hint())
        raise


def _settings() -> Settings:
    try:
        return load_settings(Settings)
    except OperatorError as exc:
        exc.problems.append(settings_hint())
        raise


def _secrets(settings: Settings) -> list[str]:
    values = [settings.telegram_bot_token.get_secret_value()]
    if settings.webhook_secret:
        values.append(settings.webhook_secret.get_secret_value())
    return values


async def _run(settings: Settings) -> int:
    from bot.app import build_app

    facts = await preflight(settings)
    app = await build_app(settings, forum=bool(facts.chat.is_forum))
    # aiogram's ~2,000 pydantic models and the rest of the start-up leave some
    # 230,000 long-lived objects; every full garbage collection walked them
    # all (~150 ms on a small VM, a stall every few seconds under load).
    # Frozen, they are skipped: collections see only what the bot allocates.
    gc.collect()
    gc.freeze()
    try:
        if settings.webhook_url:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            await app.run_webhook(stop)
        else:
            await app.run_polling()
    finally:
        await app.aclose()
    return 0


async def _erase(url: str, tg_user_id: int, provider: str) -> int:
    from bot.services.erase import erase_customer
    from bridges.registry import BridgeDeps, create_bridge

    await ensure_migrated(url)
    engine = create_engine(url)
    try:
        bridge = await create_bridge(provider, BridgeDeps(engine=engine, env=environment()))
        try:
            with database_errors(url):
                report = await erase_customer(create_sessionmaker(engine), tg_user_id,
                                              bridge=bridge)
        finally:
            await bridge.aclose()
    finally:
        await engine.dispose()
    if not report.found:
        print(f"no customer with Telegram id {tg_user_id}")
        return 1
    print(f"erased: {report.messages} message(s) of {report.tickets} ticket(s); "
          f"tickets kept anonymised for statistics")
    if report.desk_complete:
        print(f"{provider}: {report.desk_messages} message(s) erased at the helpdesk")
    else:
        print(f"the {provider} helpdesk keeps its own copy: erase the customer there too")
    return 0


async def _outbox(url: str, command: str, ids: list[int]) -> int:
    from bot.outbox.dead_letters import outbox_command  # the outbox loads aiogram's errors

    await ensure_migrated(url)
    return await outbox_command(url, command, ids)


if __name__ == "__main__":
    sys.exit(main())
