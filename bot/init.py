"""`deskbridge init`: a first-time operator's set-up, ending in a `.env`.

It asks for the bot's token (hidden) and checks it with getMe; asks the
operator to add the bot to the agents' supergroup and waits for Telegram's
`my_chat_member` update saying it was added, then shows the group's title and
id and checks forum topics and the bot's rights (saying what to fix, and
checking again when asked); asks for the helpdesk and only the settings that
helpdesk needs, checked as `deskbridge run` would check them; and writes
`.env` (an existing one is only replaced when the operator agrees or passes
`--force`; otherwise the result goes next to it as `.env.new`).

Everything can be given as options instead (`--token`, `--agent-chat-id`,
`--provider`, `--set NAME=VALUE`, ...); with `--no-input` nothing is asked and
a missing answer is an error. The Bot API is reached at TELEGRAM_API_BASE
(`--api-base`), like everything else. Texts follow the operator's locale.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from dotenv import dotenv_values

from bot.config import (
    ENV_FILE,
    EXAMPLE_AGENT_CHAT_ID,
    EXAMPLE_TOKEN,
    PROVIDERS,
    TOKEN_PATTERN,
    environment,
)
from bot.i18n import gettext
from bot.problems import EXIT_FAILURE, EXIT_SETTINGS, OperatorError, failure, operator_language
from bot.startup import check_provider_settings

if TYPE_CHECKING:  # aiogram only once Telegram is asked: `deskbridge --help` stays quick
    from aiogram import Bot
    from aiogram.types import User

DEFAULT_API_BASE = "https://api.telegram.org"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///deskbridge.db"
LONG_POLL = 25  # seconds of each getUpdates while waiting for the group
GROUP_TYPES = ("group", "supergroup")
MAX_TRIES = 3  # answers refused in a row before giving up


@dataclass(frozen=True)
class Question:
    """One provider setting: asked unless the provider can do without it."""

    variable: str
    required: bool = True
    secret: bool = False
    # Asked only when this other variable got an answer (or, with "!", got none).
    when: str | None = None


PROVIDER_QUESTIONS: dict[str, tuple[Question, ...]] = {
    "local": (),
    "omnidesk": (
        Question("OMNIDESK_BASE_URL"), Question("OMNIDESK_STAFF_EMAIL"),
        Question("OMNIDESK_API_KEY", secret=True), Question("OMNIDESK_CHANNEL", required=False),
    ),
    "zenlix": (
        Question("ZENLIX_BASE_URL"), Question("ZENLIX_LOGIN"),
        Question("ZENLIX_PASSWORD", secret=True),
        Question("ZENLIX_DEFAULT_CLIENT", required=False),
    ),
    "plusofon": (
        Question("PLUSOFON_TOKEN", required=False, secret=True),
        Question("PLUSOFON_EMAIL", when="!PLUSOFON_TOKEN"),
        Question("PLUSOFON_PASSWORD", secret=True, when="!PLUSOFON_TOKEN"),
    ),
    "iqstore": (
        Question("IQSTORE_PUBLIC_BASE_URL"), Question("IQSTORE_CHANNEL"),
        Question("IQSTORE_APP_BASE_URL", required=False),
        Question("IQSTORE_SERVICE_TOKEN", secret=True, when="IQSTORE_APP_BASE_URL"),
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--token", help="the bot's token from @BotFather")
    parser.add_argument("--agent-chat-id", type=int,
                        help="the agents' supergroup (default: wait until the bot is added)")
    parser.add_argument("--provider", choices=PROVIDERS, help="the helpdesk (default: local)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="any other setting, e.g. --set OMNIDESK_API_KEY=... (repeatable)")
    parser.add_argument("--api-base", help="Bot API server (default: TELEGRAM_API_BASE or "
                                           f"{DEFAULT_API_BASE})")
    parser.add_argument("--database-url", help=f"default: {DEFAULT_DATABASE_URL}")
    parser.add_argument("--agent-language", choices=("ru", "en"))
    parser.add_argument("--timezone", help="e.g. Europe/Moscow (default: UTC)")
    parser.add_argument("--env-file", default=ENV_FILE, help="where to write (default: .env)")
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    parser.add_argument("--no-input", action="store_true",
                        help="ask nothing: every answer comes from the options")
    parser.add_argument("--wait", type=float, default=0,
                        help="with --no-input: seconds to wait for the bot to be added to a "
                             "group (default: do not wait, --agent-chat-id is needed)")


# ---------------------------------------------------------------- the terminal


@dataclass
class Console:
    lang: str
    interactive: bool
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    stdout: TextIO = field(default_factory=lambda: sys.stdout)

    def say(self, key: str, **params: Any) -> None:
        self.print(gettext(self.lang, key, **params))

    def print(self, text: str = "") -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def ask(self, key: str, *, default: str | None = None, secret: bool = False,
            **params: Any) -> str:
        """An answer, or `default` for an empty one. Hidden on a terminal when secret."""
        prompt = gettext(self.lang, key, **params)
        if default:
            shown = "***" if secret else default
            prompt += " " + gettext(self.lang, "init.default", value=shown)
        prompt += " "
        if secret and self.stdin.isatty():
            answer = getpass.getpass(prompt)  # not echoed
        else:
            # A pipe (automation, tests) echoes nothing either.
            self.stdout.write(prompt)
            self.stdout.flush()
            line = self.stdin.readline()
            if not line:
                raise EOFError
            answer = line.rstrip("\n")
        return answer.strip() or (default or "")

    def confirm(self, key: str, default: bool = False, **params: Any) -> bool:
        answer = self.ask(key, **params).lower()
        if not answer:
            return default
        return answer[0] in ("y", "д")  # yes / да


# ---------------------------------------------------------------- the wizard


@dataclass
class Answers:
    values: dict[str, str] = field(default_factory=dict)
    problems_left: list[str] = field(default_factory=list)


def make_bot(token: str, api_base: str) -> Bot:
    from aiogram import Bot
    from aiogram.client.telegram import TelegramAPIServer

    from bot.telegram.session import TelegramSession

    return Bot(token, session=TelegramSession(api=TelegramAPIServer.from_base(api_base)))


def _overrides(pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]*", name.strip()):
            raise failure("init.bad_set", EXIT_SETTINGS, pair=pair)
        values[name.strip()] = value
    return values


def _usable(value: str | None, example: str) -> str | None:
    return value if value and value.strip() and value.strip() != example else None


async def ask_token(console: Console, given: str | None, current: str | None,
                    api_base: str) -> tuple[str, User]:
    """A token Telegram accepts, and the bot it belongs to."""
    from aiogram.exceptions import TelegramAPIError, TelegramUnauthorizedError

    token = given
    for _ in range(MAX_TRIES):
        if token is None:
            if not console.interactive:
                raise failure("init.need_token", EXIT_SETTINGS)
            token = console.ask("init.ask_token", default=current, secret=True)
        token = token.strip()
        if not TOKEN_PATTERN.match(token) or token == EXAMPLE_TOKEN:
            if not console.interactive:
                raise failure("init.token_malformed", EXIT_SETTINGS)
            console.say("init.token_malformed")
            token = None
            continue
        bot = make_bot(token, api_base)
        try:
            me = await bot.get_me(request_timeout=20)
        except TelegramUnauthorizedError:
            if not console.interactive:
                raise failure("init.token_refused", EXIT_SETTINGS) from None
            console.say("init.token_refused")
            token = None
            continue
        except TelegramAPIError as exc:
            raise failure("startup.telegram_unreachable", url=api_base,
                          reason=_reason(exc)) from None
        finally:
            await bot.session.close()
        console.say("init.token_ok", username=me.username or "", name=me.full_name)
        if me.can_join_groups is False:
            console.say("init.cannot_join_groups", username=me.username or "")
        return token, me
    raise failure("init.gave_up", EXIT_SETTINGS)


def _reason(exc: BaseException) -> str:
    words = (getattr(exc, "message", None) or str(exc) or type(exc).__name__).strip()
    return words.splitlines()[0][:200]


async def wait_for_group(console: Console, bot: Bot, me: User, *, wait: float | None
                         ) -> int | None:
    """The id of the group the bot is added to next (from my_chat_member), or
    None when nothing came within `wait` seconds (None: as long as it takes)."""
    from aiogram.exceptions import TelegramConflictError

    info = await bot.get_webhook_info(request_timeout=20)
    if info.url:
        if not (console.interactive and console.confirm("init.webhook_question", url=info.url)):
            return None
        await bot.delete_webhook(drop_pending_updates=False, request_timeout=20)
    console.say("init.add_bot", username=me.username or "")
    loop = asyncio.get_running_loop()
    deadline = None if wait is None else loop.time() + wait
    offset: int | None = None
    while deadline is None or loop.time() < deadline:
        timeout = LONG_POLL if deadline is None else max(0, min(LONG_POLL, int(
            deadline - loop.time())))
        try:
            updates = await bot.get_updates(offset=offset, timeout=timeout,
                                            allowed_updates=["my_chat_member"],
                                            request_timeout=timeout + 15)
        except TelegramConflictError:
            console.say("init.someone_else_polls")
            return None
        for update in updates:
            offset = update.update_id + 1
            event = update.my_chat_member
            if event is None or event.chat.type not in GROUP_TYPES:
                continue
            if event.new_chat_member.status in ("administrator", "member"):
                console.say("init.group_found", title=event.chat.title or "",
                            chat_id=event.chat.id, who=event.from_user.full_name)
                if offset is not None:  # what was read is settled for the bot's own start
                    await bot.get_updates(offset=offset, timeout=0, request_timeout=20)
                return event.chat.id
    return None


async def check_group(console: Console, bot: Bot, me: User, chat_id: int) -> list[str]:
    """The agent-chat lines of `deskbridge check`; asks to check again after
    a fix. Returns the problems that remain."""
    from bot.check import FAIL, Report, check_agent_chat

    while True:
        report = Report(console.lang, console.print)
        await check_agent_chat(bot, me, chat_id, report)
        problems = [line for line in report.lines if line.startswith(f"[{FAIL}]")]
        if not problems:
            return []
        if not console.interactive or not console.confirm("init.check_again"):
            return problems


async def ask_provider(console: Console, provider: str | None, known: Mapping[str, str],
                       given: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    if provider is None:
        current = known.get("PROVIDER", "local").strip().lower()
        provider = current if current in PROVIDERS else "local"
        if console.interactive:
            for _ in range(MAX_TRIES):
                answer = console.ask("init.ask_provider", default=provider).lower()
                if answer in PROVIDERS:
                    provider = answer
                    break
                console.say("init.unknown_provider", providers=", ".join(PROVIDERS))
    values: dict[str, str] = {}
    questions = PROVIDER_QUESTIONS[provider]
    answered: set[str] = set()
    for attempt in range(MAX_TRIES):
        for question in questions:
            if question.when is not None:
                other = question.when.lstrip("!")
                if bool(values.get(other)) == question.when.startswith("!"):
                    continue
            name = question.variable
            if name in given:
                values[name] = given[name]
                continue
            if name in answered:
                continue
            if not console.interactive:
                if name in known:
                    values[name] = known[name]
                continue
            answer = console.ask(f"init.ask_{name.lower()}", default=known.get(name),
                                 secret=question.secret)
            answered.add(name)
            if answer:
                values[name] = answer
        env = dict(known) | values
        try:
            await check_provider_settings(provider, env)
        except OperatorError as exc:
            if not console.interactive or attempt == MAX_TRIES - 1:
                raise
            for problem in exc.problems:
                console.print(problem.text(console.lang))
            # Ask again what was refused (everything, when no variable was named).
            refused = {p.variable for p in exc.problems if p.variable} or {
                q.variable for q in questions}
            answered -= refused
            for name in refused:
                values.pop(name, None)
            continue
        return provider, values
    raise failure("init.gave_up", EXIT_SETTINGS)


def dotenv_line(name: str, value: str) -> str:
    """NAME=value as python-dotenv reads it back exactly."""
    if re.fullmatch(r"[A-Za-z0-9_@:/.+,=%-]*", value):
        return f"{name}={value}"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{name}="{escaped}"'


def render_env(values: Mapping[str, str], kept: Mapping[str, str], lang: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [gettext(lang, "init.file_header", stamp=stamp), ""]
    lines += [dotenv_line(name, value) for name, value in values.items()]
    if kept:
        lines += ["", gettext(lang, "init.file_kept")]
        lines += [dotenv_line(name, value) for name, value in kept.items()]
    return "\n".join(lines) + "\n"


def write_env(console: Console, path: Path, text: str, *, force: bool) -> Path:
    target = path
    if path.exists() and not force and not (
            console.interactive and console.confirm("init.overwrite_question", path=str(path))):
        target = path.with_name(path.name + ".new")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds secrets
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    return target


@dataclass(frozen=True)
class Existing:
    """The file to write and what is known before asking: its current values
    (`previous`), over the environment (`known`, the defaults offered)."""

    path: Path
    previous: dict[str, str]
    known: dict[str, str]

    @classmethod
    def read(cls, env_file: str) -> Existing:
        path = Path(env_file).resolve()
        previous = {k: v for k, v in dotenv_values(path).items() if v is not None} if (
            path.is_file()) else {}
        return cls(path, previous, environment(None) | previous)


async def wizard(args: argparse.Namespace, console: Console, existing: Existing) -> int:
    path, previous, known = existing.path, existing.previous, existing.known
    given = _overrides(args.set)
    api_base = (args.api_base or given.get("TELEGRAM_API_BASE")
                or known.get("TELEGRAM_API_BASE") or DEFAULT_API_BASE).rstrip("/")
    console.say("init.welcome", path=str(path))

    token, me = await ask_token(console, args.token or given.get("TELEGRAM_BOT_TOKEN"),
                                _usable(known.get("TELEGRAM_BOT_TOKEN"), EXAMPLE_TOKEN),
                                api_base)
    bot = make_bot(token, api_base)
    try:
        chat_id = args.agent_chat_id
        if chat_id is None and "AGENT_CHAT_ID" in given:
            chat_id = int(given["AGENT_CHAT_ID"])
        if chat_id is None:
            wait = None if console.interactive else (args.wait or None)
            if console.interactive or args.wait:
                chat_id = await wait_for_group(console, bot, me, wait=wait)
            if chat_id is None and console.interactive:
                current = _usable(known.get("AGENT_CHAT_ID"), str(EXAMPLE_AGENT_CHAT_ID))
                chat_id = int(console.ask("init.ask_chat_id", default=current) or "0") or None
            if chat_id is None:
                raise failure("init.need_chat", EXIT_SETTINGS)
        chat_problems = await check_group(console, bot, me, chat_id)
    finally:
        await bot.session.close()

    provider, provider_values = await ask_provider(console, args.provider, known, given)
    language = args.agent_language or given.get("AGENT_LANGUAGE") or known.get(
        "AGENT_LANGUAGE") or console.lang
    if console.interactive and not args.agent_language:
        language = console.ask("init.ask_language", default=language).lower() or language
    values = {"TELEGRAM_BOT_TOKEN": token}
    if api_base != DEFAULT_API_BASE:
        values["TELEGRAM_API_BASE"] = api_base
    values |= {"AGENT_CHAT_ID": str(chat_id), "AGENT_LANGUAGE": language,
               "DATABASE_URL": args.database_url or given.get("DATABASE_URL")
               or known.get("DATABASE_URL") or DEFAULT_DATABASE_URL}
    timezone = args.timezone or given.get("TIMEZONE") or known.get("TIMEZONE")
    if timezone:
        values["TIMEZONE"] = timezone
    values["PROVIDER"] = provider
    values |= provider_values
    values |= {k: v for k, v in given.items() if k not in values}
    kept = {k: v for k, v in previous.items() if k not in values}
    target = write_env(console, path, render_env(values, kept, console.lang), force=args.force)
    console.say("init.written", path=str(target))
    if target != path:
        console.say("init.written_beside", path=path.name, new=target.name)
    if chat_problems:
        console.say("init.fix_first")
        return EXIT_FAILURE
    console.say("init.next")
    return 0


def run_init(args: argparse.Namespace, *, stdin: TextIO | None = None,
             stdout: TextIO | None = None) -> int:
    console = Console(operator_language(), interactive=not args.no_input,
                      stdin=stdin or sys.stdin, stdout=stdout or sys.stdout)
    try:
        return asyncio.run(wizard(args, console, Existing.read(args.env_file)))
    except EOFError:
        console.print()
        raise failure("init.no_answer", EXIT_SETTINGS) from None

