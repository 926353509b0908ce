"""What `deskbridge` checks before anything starts, each failure one line
(see bot.problems): the settings, the provider's settings, the ports, the
database's migrations, Telegram (reachable, the token accepted, the agent
chat visible) and Redis."""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError, NoSuchModuleError, SQLAlchemyError

from bot.config import ENV_FILE, PROVIDERS, DatabaseSettings, Settings, environment
from bot.problems import (
    EXIT_SETTINGS,
    OperatorError,
    Problem,
    failure,
    problems_from_provider_error,
    problems_from_validation,
    shown,
)

if TYPE_CHECKING:  # aiogram is imported where Telegram is asked: `migrate`,
    # `outbox` and refusals start without it (~1 s and ~120 MB).
    from aiogram import Bot
    from aiogram.exceptions import TelegramAPIError
    from aiogram.types import ChatFullInfo, User

log = logging.getLogger("deskbridge")

S = TypeVar("S", bound=DatabaseSettings)
TELEGRAM_TIMEOUT = 20  # seconds for each start-up call to the Bot API
GROUP_TYPES = ("group", "supergroup")


# ---------------------------------------------------------------- settings


def load_settings(cls: type[S], **values: Any) -> S:
    """`cls` from the environment and `.env`, or an OperatorError listing every
    variable at fault."""
    try:
        return cls(**values)
    except ValidationError as exc:
        raise OperatorError(problems_from_validation(exc)) from None


def load_provider(env: Mapping[str, str] | None = None) -> str:
    """PROVIDER alone, for the commands that need no token."""
    value = (environment() if env is None else env).get("PROVIDER", "local").strip().lower()
    if value not in PROVIDERS:
        raise OperatorError([Problem(variable="PROVIDER", kind="choice",
                                     value=shown("PROVIDER", value))])
    return value


async def check_provider_settings(provider: str, env: Mapping[str, str]) -> None:
    """Builds the provider's bridge once (no network: factories only read
    their settings) so that its settings are refused before anything starts."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from bridges.registry import BridgeDeps, create_bridge

    engine = create_async_engine("sqlite+aiosqlite://")  # never connected
    try:
        bridge = await create_bridge(provider, BridgeDeps(engine=engine, env=dict(env)))
    except (ValueError, ValidationError) as exc:
        raise OperatorError(problems_from_provider_error(exc, provider)) from None
    finally:
        await engine.dispose()
    await bridge.aclose()


def settings_hint() -> Problem:
    return Problem(key="config.where", params={"path": str(Path(ENV_FILE).resolve())})


# ---------------------------------------------------------------- ports


def listen_error(variable: str, address: str, exc: OSError) -> OperatorError:
    if exc.errno == errno.EADDRINUSE:
        return failure("startup.port_busy", EXIT_SETTINGS, variable=variable, address=address)
    return failure("startup.port_refused", EXIT_SETTINGS, variable=variable, address=address,
                   reason=exc.strerror or str(exc))


def check_port(variable: str, address: str) -> None:
    """Binds the address the way aiohttp will (SO_REUSEADDR) and lets it go."""
    from bot.config import split_host_port

    host, port = split_host_port(address, 0)
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise failure("startup.port_refused", EXIT_SETTINGS, variable=variable,
                      address=address, reason=exc.strerror or str(exc)) from None
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            raise listen_error(variable, address, exc) from None


def check_ports(settings: Settings) -> None:
    if settings.http_listen:
        check_port("HTTP_LISTEN", settings.http_listen)
    if settings.webhook_url:
        check_port("WEBHOOK_LISTEN", settings.webhook_listen)


# ---------------------------------------------------------------- database


def database_label(url: str) -> str:
    return shown("DATABASE_URL", url) or "DATABASE_URL"


def _reason(exc: BaseException) -> str:
    """The first line of what the driver said, without SQLAlchemy's wrapping."""
    origin = getattr(exc, "orig", None) or exc
    words = str(origin).strip().splitlines()
    return (words[0] if words else type(origin).__name__)[:200]


@contextlib.contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Connection failures as one line (exit 1)."""
    try:
        yield
    except OperatorError:
        raise
    except (DBAPIError, OSError, NoSuchModuleError) as exc:
        raise failure("startup.database_unreachable", url=database_label(url),
                      reason=_reason(exc)) from None


async def migration_state(url: str) -> tuple[str | None, set[str], set[str]]:
    """(the database's revision or None, the code's heads, every revision the
    code knows)."""
    from alembic.script import ScriptDirectory

    from bot.db.migrate import alembic_config
    from bot.db.session import create_engine, is_sqlite

    script = ScriptDirectory.from_config(alembic_config(url))
    heads = set(script.get_heads())
    known = {revision.revision for revision in script.walk_revisions()}
    if is_sqlite(url) and not _sqlite_file_exists(url):
        return None, heads, known  # connecting would create an empty file
    engine = create_engine(url)
    try:
        with database_errors(url):
            async with engine.connect() as connection:
                try:
                    current = await connection.scalar(
                        text("SELECT version_num FROM alembic_version"))
                except SQLAlchemyError:
                    return None, heads, known  # no version table: never migrated
    finally:
        await engine.dispose()
    return (str(current) if current else None), heads, known


def _sqlite_file_exists(url: str) -> bool:
    path = make_url(url).database
    return not path or path == ":memory:" or Path(path).exists()


async def ensure_migrated(url: str) -> None:
    """The database is at the code's revision, or one line saying what to do."""
    current, heads, known = await migration_state(url)
    if current is None:
        raise failure("startup.database_empty", EXIT_SETTINGS, url=database_label(url))
    if current not in heads:
        key = "startup.database_behind" if current in known else "startup.database_ahead"
        raise failure(key, EXIT_SETTINGS, url=database_label(url), revision=current)


# ---------------------------------------------------------------- Telegram


@dataclass(frozen=True)
class TelegramFacts:
    me: User
    chat: ChatFullInfo


def telegram_failure(exc: TelegramAPIError, settings: Settings) -> OperatorError:
    from aiogram.exceptions import TelegramUnauthorizedError

    if isinstance(exc, TelegramUnauthorizedError):
        return failure("startup.token_refused", EXIT_SETTINGS)
    reason = getattr(exc, "message", None) or str(exc)
    return failure("startup.telegram_unreachable", url=settings.telegram_api_base,
                   reason=reason.splitlines()[0][:200])


async def telegram_facts(bot: Bot, settings: Settings) -> TelegramFacts:
    """getMe and getChat of the agent chat, or one line saying what to fix."""
    from aiogram.exceptions import (
        TelegramAPIError,
        TelegramMigrateToChat,
        TelegramNetworkError,
        TelegramServerError,
    )

    try:
        me = await bot.get_me(request_timeout=TELEGRAM_TIMEOUT)
    except TelegramAPIError as exc:
        raise telegram_failure(exc, settings) from None
    try:
        try:
            chat = await bot.get_chat(settings.agent_chat_id, request_timeout=TELEGRAM_TIMEOUT)
        except TelegramMigrateToChat as exc:
            # Telegram made the group a supergroup: the bot follows the new id
            # (bot.telegram.agent_chat_watch), so this is no reason to stop.
            chat = await bot.get_chat(exc.migrate_to_chat_id, request_timeout=TELEGRAM_TIMEOUT)
    except (TelegramNetworkError, TelegramServerError) as exc:
        raise telegram_failure(exc, settings) from None
    except TelegramAPIError as exc:
        raise failure("startup.agent_chat_unreachable", EXIT_SETTINGS,
                      chat_id=settings.agent_chat_id,
                      reason=(exc.message or str(exc)).splitlines()[0][:200]) from None
    if chat.type not in GROUP_TYPES:
        raise failure("startup.agent_chat_not_group", EXIT_SETTINGS,
                      chat_id=settings.agent_chat_id, kind=chat.type)
    return TelegramFacts(me=me, chat=chat)


async def check_redis(url: str) -> None:
    import redis.asyncio as redis

    client = redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        await client.ping()
    except Exception as exc:
        raise failure("startup.redis_unreachable", url=shown("REDIS_URL", url) or url,
                      reason=str(exc).splitlines()[0][:200] if str(exc) else
                      type(exc).__name__) from None
    finally:
        await client.aclose()


async def preflight(settings: Settings) -> TelegramFacts:
    """Everything `run` needs before it starts, or an OperatorError."""
    from bot.app import make_bot

    check_ports(settings)
    if settings.redis_url:
        await check_redis(settings.redis_url)
    bot = make_bot(settings)
    try:
        return await telegram_facts(bot, settings)
    finally:
        await bot.session.close()

