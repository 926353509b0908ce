"""Settings from the environment or `.env`, and what the operator is told
when one is wrong: one line per problem naming the variable, exit code 2,
no traceback, in Russian when the locale is Russian."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.__main__ import main
from bot.config import PROVIDERS, Settings, environment
from bot.problems import operator_language
from bot.sandbox.telegram_server import FakeTelegramServer
from tests.bot.conftest import AGENT_CHAT, IVAN, TOKEN, find

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / ".env.example").read_text(encoding="utf-8")
PROVIDER_PREFIXES = tuple(f"{name.upper()}_" for name in PROVIDERS)
LOCALE_VARIABLES = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")


def _ours(name: str) -> bool:
    return (name.lower() in Settings.model_fields or name.startswith(PROVIDER_PREFIXES)
            or name in LOCALE_VARIABLES)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty working directory and an environment without any setting."""
    for name in list(os.environ):
        if _ours(name):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # commands set logging up
    try:
        yield tmp_path
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def write_env(folder: Path, text: str, **values: str) -> None:
    lines = [text.rstrip("\n")] + [f"{name}={value}" for name, value in values.items()]
    (folder / ".env").write_text("\n".join(lines) + "\n", encoding="utf-8")


def good_env(folder: Path, server_url: str = "http://127.0.0.1:9", **values: str) -> None:
    base = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE": server_url,
            "AGENT_CHAT_ID": str(AGENT_CHAT), "HTTP_LISTEN": "",
            "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'deskbridge.db'}"}
    write_env(folder, "", **(base | values))


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def subprocess_env(**extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8",
            **extra}


# ---------------------------------------------------------------- refusals


BAD_SETTINGS = [
    # (variable, value, words the line must contain)
    ("AGENT_CHAT_ID", "abc", "must be a number like -1001234567890"),
    ("AGENT_CHAT_ID", "12345", "a person's id, not a group's"),
    ("PROVIDER", "foo", "must be one of local, omnidesk, zenlix, plusofon, iqstore; got 'foo'"),
    ("TELEGRAM_BOT_TOKEN", "abc", "must be the token @BotFather gave you"),
    ("TELEGRAM_API_BASE", "api.telegram.org", "must be the Bot API server's URL"),
    ("LOG_LEVEL", "verbose", "must be one of DEBUG, INFO"),
    ("DATABASE_URL", "postgres://bot:hunter2@db/desk", "must start with postgresql+asyncpg://"),
    ("DATABASE_URL", "mysql://bot@db/desk", "must be sqlite+aiosqlite:///deskbridge.db or"),
    ("AGENT_ALLOWLIST", "alice", "must be Telegram user ids separated by commas"),
    ("LOG_FORMAT", "xml", "must be text or json; got 'xml'"),
    ("AGENT_LANGUAGE", "de", "must be ru or en; got 'de'"),
    ("POLL_INTERVAL_SECONDS", "0", "must be a number of seconds above 0"),
    ("OUTBOX_MAX_ATTEMPTS", "-1", "must be a whole number of 1 or more"),
    ("OUTBOX_LEASE_SECONDS", "0", "must be a number of seconds above 0"),
    ("TELEGRAM_GROUP_PER_MINUTE", "0", "whole number of messages of 1 or more"),
    ("SLA_CHECK_INTERVAL_SECONDS", "-5", "above 0"),
    ("SLA_AUTOCLOSE_DAYS", "-1", "0 never closes tickets by itself"),
    ("REDIS_URL", "localhost:6379", "must be a Redis URL like redis://"),
    ("HTTP_LISTEN", "8080", "must be host:port like 127.0.0.1:8080"),
    ("WEBHOOK_LISTEN", "0.0.0.0:99999", "must be host:port"),
    ("WEBHOOK_URL", "bot.example.com/hook", "must be the public URL Telegram sends updates to"),
]


@pytest.mark.parametrize(("variable", "value", "words"), BAD_SETTINGS,
                         ids=[f"{v}={x}" for v, x, _ in BAD_SETTINGS])
def test_a_bad_setting_is_one_line_and_exit_code_2(
    workdir: Path, capsys: pytest.CaptureFixture[str], variable: str, value: str, words: str
) -> None:
    good_env(workdir, **{variable: value})
    for command in (["run"], ["check"]):
        code, output = cli(command, capsys)
        assert code == 2, output
        [line] = [line for line in output.splitlines() if line.startswith(variable)]
        assert words in line
        assert "Traceback" not in output and "started" not in output
        assert "hunter2" not in output  # a database password is never repeated


def test_every_problem_is_listed_at_once(workdir: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    write_env(workdir, "", AGENT_CHAT_ID="abc", LOG_FORMAT="xml", PROVIDER="foo")
    code, output = cli(["run"], capsys)
    assert code == 2
    lines = output.splitlines()
    assert lines[:4] == [
        "TELEGRAM_BOT_TOKEN is not set; it must be the token @BotFather gave you, like "
        "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
        "AGENT_CHAT_ID must be a number like -1001234567890 (the agent supergroup's id); "
        "got 'abc'",
        "PROVIDER must be one of local, omnidesk, zenlix, plusofon, iqstore; got 'foo'",
        "LOG_FORMAT must be text or json; got 'xml'",
    ]
    assert lines[4] == (f"(Settings are read from the environment and from "
                        f"{workdir.resolve() / '.env'}.)")


def test_the_example_file_unchanged_is_recognised(workdir: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    write_env(workdir, EXAMPLE)
    code, output = cli(["run"], capsys)
    assert code == 2
    assert ("TELEGRAM_BOT_TOKEN still holds the example value; get a token from @BotFather"
            in output.splitlines())
    assert "AGENT_CHAT_ID still holds the example value" in output
    assert "Traceback" not in output and "started" not in output
    assert not (workdir / "deskbridge.db").exists()  # refused before anything started


def test_a_webhook_needs_its_secret(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good_env(workdir, WEBHOOK_URL="https://bot.example.com/hook")
    code, output = cli(["run"], capsys)
    assert code == 2
    assert output.startswith("WEBHOOK_SECRET must be set when WEBHOOK_URL is")
    good_env(workdir, WEBHOOK_URL="https://bot.example.com/hook", WEBHOOK_SECRET="no spaces")
    code, output = cli(["run"], capsys)
    assert (code, output.split(" ")[0]) == (2, "WEBHOOK_SECRET")
    assert "no spaces" not in output  # a secret is never repeated


def test_secrets_are_never_repeated(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good_env(workdir, TELEGRAM_BOT_TOKEN="12345:has spaces and xyzzy")
    code, output = cli(["check"], capsys)
    assert code == 2 and "TELEGRAM_BOT_TOKEN" in output and "xyzzy" not in output


@pytest.mark.parametrize("provider", ["omnidesk", "zenlix", "plusofon", "iqstore"])
def test_provider_settings_are_checked_before_anything_starts(
    workdir: Path, capsys: pytest.CaptureFixture[str], provider: str
) -> None:
    good_env(workdir, PROVIDER=provider)
    code, output = cli(["run"], capsys)
    assert code == 2, output
    assert provider.upper() in output and "Traceback" not in output
    assert not (workdir / "deskbridge.db").exists()


def test_provider_settings_name_the_variable_and_the_value(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good_env(workdir, PROVIDER="omnidesk", OMNIDESK_BASE_URL="example.omnidesk.ru",
             OMNIDESK_STAFF_EMAIL="support@example.com", OMNIDESK_API_KEY="k3y-s3cret")
    code, output = cli(["check"], capsys)
    assert code == 2
    assert output.splitlines()[0] == (
        "OMNIDESK_BASE_URL must be your Omnidesk address, like https://example.omnidesk.ru; "
        "got 'example.omnidesk.ru'")
    assert "k3y-s3cret" not in output


def test_in_russian_when_the_locale_is_russian(workdir: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANG", "ru_RU.UTF-8")
    good_env(workdir, AGENT_CHAT_ID="abc", PROVIDER="omnidesk")
    code, output = cli(["run"], capsys)
    assert code == 2
    assert output.splitlines()[0] == (
        "AGENT_CHAT_ID: нужно число вида -1001234567890 (id супергруппы агентов); сейчас 'abc'")
    good_env(workdir, PROVIDER="omnidesk")
    code, output = cli(["run"], capsys)
    assert output.splitlines()[0] == (
        "OMNIDESK_BASE_URL не задан: нужен адрес вашего Omnidesk, например "
        "https://example.omnidesk.ru")


@pytest.mark.parametrize(("environ", "expected"), [
    ({"LANG": "ru_RU.UTF-8"}, "ru"), ({"LANG": "C.UTF-8"}, "en"), ({}, "en"),
    ({"LC_ALL": "en_US.UTF-8", "LANG": "ru_RU.UTF-8"}, "en"),
    ({"LANGUAGE": "ru:en", "LANG": "en_GB.UTF-8"}, "ru"),
    ({"LC_MESSAGES": "ru_UA.UTF-8"}, "ru"),
])
def test_operator_language(environ: dict[str, str], expected: str) -> None:
    assert operator_language(environ) == expected


def test_commands_that_need_only_the_database(workdir: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    write_env(workdir, "", DATABASE_URL="postgres://bot:hunter2@db/desk")
    for command in (["migrate"], ["outbox", "list"], ["outbox", "replay"],
                    ["erase-customer", "1"]):
        code, output = cli(command, capsys)
        assert code == 2, command
        assert output.startswith("DATABASE_URL must start with postgresql+asyncpg://")
        assert "hunter2" not in output
    write_env(workdir, "", PROVIDER="foo")
    code, output = cli(["erase-customer", "1"], capsys)
    assert (code, output.split(" ")[0]) == (2, "PROVIDER")


def test_outbox_on_a_database_never_migrated(workdir: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    good_env(workdir)
    for command in (["outbox", "list"], ["outbox", "replay", "3"], ["erase-customer", "7"]):
        code, output = cli(command, capsys)
        assert code == 2, command
        assert "has no deskbridge tables yet: run deskbridge migrate" in output
        assert "Traceback" not in output
    assert not (workdir / "deskbridge.db").exists()  # looking did not create it
    assert cli(["migrate"], capsys) == (0, "database is up to date\n")
    assert cli(["outbox", "list"], capsys) == (0, "no dead letters\n")


def test_an_unreachable_database_is_one_line(workdir: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    write_env(workdir, "", DATABASE_URL=f"postgresql+asyncpg://bot:hunter2@127.0.0.1:{port}/x")
    for command in (["migrate"], ["outbox", "list"]):
        code, output = cli(command, capsys)
        assert code == 1, output
        [line] = output.splitlines()
        assert line.startswith("Cannot open the database 'postgresql+asyncpg://bot:***@127.0.0.1")
        assert "hunter2" not in line


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == "deskbridge 0.1.0"


# ---------------------------------------------------------------- at start


async def test_telegram_unreachable_is_one_line(workdir: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    good_env(workdir, f"http://127.0.0.1:{port}")
    code, output = await asyncio.to_thread(cli, ["run"], capsys)
    assert code == 1
    [line] = output.splitlines()
    assert line.startswith(f"Cannot reach the Bot API at http://127.0.0.1:{port}: ")
    assert line.endswith("Check the network, or TELEGRAM_API_BASE")


async def test_a_refused_token_is_one_line(workdir: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    async with FakeTelegramServer(token="999:another-bot") as server:
        good_env(workdir, server.base_url)
        code, output = await asyncio.to_thread(cli, ["run"], capsys)
    assert code == 2
    assert output.splitlines() == [
        "Telegram refused TELEGRAM_BOT_TOKEN (401 Unauthorized): copy the token from "
        "@BotFather again, or issue a new one there (/token)"]


async def test_an_agent_chat_the_bot_cannot_see(workdir: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    async with FakeTelegramServer(token=TOKEN) as server:
        server.add_user(IVAN, "Ivan")
        good_env(workdir, server.base_url)
        code, output = await asyncio.to_thread(cli, ["run"], capsys)
        assert code == 2
        assert output.splitlines() == [
            f"AGENT_CHAT_ID {AGENT_CHAT}: Telegram says Bad Request: chat not found. Add the bot "
            "to the agent group, then send /id there (or run deskbridge init) to get the "
            "right id"]
        good_env(workdir, server.base_url, AGENT_CHAT_ID=str(-IVAN))
        server.chats[-IVAN] = server.chats[IVAN]  # a private chat under a group-like id
        code, output = await asyncio.to_thread(cli, ["run"], capsys)
        assert code == 2 and f"AGENT_CHAT_ID {-IVAN} is a private chat, not a group" in output
    assert not server.calls("getUpdates")  # never started


async def test_a_busy_port_is_one_line(workdir: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    async with FakeTelegramServer(token=TOKEN) as server:
        server.add_supergroup(AGENT_CHAT)
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            address = f"127.0.0.1:{busy.getsockname()[1]}"
            good_env(workdir, server.base_url, HTTP_LISTEN=address)
            code, output = await asyncio.to_thread(cli, ["run"], capsys)
            assert code == 2
            assert output.splitlines() == [
                f"HTTP_LISTEN {address}: the port is already in use; choose another one or "
                "stop what listens there"]
            good_env(workdir, server.base_url, WEBHOOK_URL="https://bot.example.com/hook",
                     WEBHOOK_SECRET="s3cret", WEBHOOK_LISTEN=address)
            code, output = await asyncio.to_thread(cli, ["run"], capsys)
            assert code == 2 and output.startswith(f"WEBHOOK_LISTEN {address}: the port is")
        assert not server.calls("getUpdates") and not server.calls("setWebhook")


# ---------------------------------------------------------------- .env only


def test_environment_merges_the_file_under_the_environment(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_env(workdir, "", OMNIDESK_API_KEY="from-file", OMNIDESK_CHANNEL="cch1",
              PROVIDER="omnidesk")
    monkeypatch.setenv("OMNIDESK_CHANNEL", "cch2")
    env = environment()
    assert (env["OMNIDESK_API_KEY"], env["OMNIDESK_CHANNEL"], env["PROVIDER"]) == (
        "from-file", "cch2", "omnidesk")
    assert env["PATH"] == os.environ["PATH"]


def test_secrets_in_the_file_are_redacted_from_logs(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.logs import setup_logging

    write_env(workdir, "", ZENLIX_PASSWORD="pa55-from-the-file")
    setup_logging("INFO")
    logging.getLogger("deskbridge.test").warning("login failed with pa55-from-the-file")
    err = capsys.readouterr().err
    assert "login failed with ***" in err and "pa55" not in err


def start_bot(workdir: Path, log: Path) -> subprocess.Popen[bytes]:
    """`python -m bot run` whose environment holds no setting at all."""
    with log.open("ab") as output:
        return subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=workdir,
                                env=subprocess_env(), stdout=output, stderr=subprocess.STDOUT)


def stop_bot(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def read_log(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")


async def wait_for_log(log: Path, process: subprocess.Popen[bytes], words: str,
                       timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while words not in read_log(log):
        assert process.poll() is None, read_log(log)
        assert loop.time() < deadline, read_log(log)
        await asyncio.sleep(0.1)


async def provider_world(provider: str, stack: contextlib.AsyncExitStack
                         ) -> tuple[dict[str, str], object]:
    """A fake of the provider, running, and the settings that reach it."""
    if provider == "omnidesk":
        from bot.sandbox.omnidesk import FakeOmnidesk

        omnidesk = await stack.enter_async_context(FakeOmnidesk())
        return omnidesk.env(), omnidesk
    if provider == "zenlix":
        from bot.sandbox.zenlix import FakeZenlix
        from tests.bridges.harness_zenlix import populate, zenlix_env

        zenlix = await stack.enter_async_context(FakeZenlix())
        return zenlix_env(zenlix, populate(zenlix)), zenlix
    if provider == "plusofon":
        from bot.sandbox.plusofon import FakePlusofon

        plusofon = await stack.enter_async_context(FakePlusofon())
        return plusofon.env(), plusofon
    from bot.sandbox.iqstore import FakeIqstore

    iqstore = await stack.enter_async_context(FakeIqstore())
    return iqstore.env(), iqstore


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_the_bot_runs_with_every_setting_only_in_dotenv(
    tmp_path: Path, tg: FakeTelegramServer, database_url: str, provider: str
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        provider_env: dict[str, str] = {}
        fake: object = None
        if provider != "local":
            provider_env, fake = await provider_world(provider, stack)
        write_env(tmp_path, "# written by the test: nothing comes from the environment",
                  TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_BASE=tg.base_url,
                  AGENT_CHAT_ID=str(AGENT_CHAT), DATABASE_URL=database_url,
                  PROVIDER=provider, POLL_INTERVAL_SECONDS="1", AGENT_LANGUAGE="en",
                  HTTP_LISTEN="", LOG_LEVEL="INFO", **provider_env)
        log = tmp_path / "bot.log"
        process = start_bot(tmp_path, log)
        try:
            await wait_for_log(log, process, "deskbridge started: provider=" + provider)
            tg.user_sends_text(IVAN, IVAN, "Settings from .env\nonly")
            if provider == "local":
                await tg.wait_for(lambda s: find(s.sent_to(IVAN), "#1"),
                                  timeout=30)
            else:
                # The customer's message reached the provider's fake, at the
                # address and with the credentials from .env.
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 30
                while not fake.requests:  # type: ignore[attr-defined]
                    assert loop.time() < deadline, read_log(log)
                    assert process.poll() is None, read_log(log)
                    await asyncio.sleep(0.1)
        finally:
            code = stop_bot(process)
        output = read_log(log)
        assert code == 0, output
        assert "Traceback" not in output
        assert output.count("deskbridge started") == 1


def test_example_file_copied_unchanged_as_a_new_user_would(tmp_path: Path) -> None:
    """The README's quick start, before the operator edits .env: `deskbridge
    run` refuses in two lines and starts nothing."""
    (tmp_path / ".env").write_text(EXAMPLE, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "bot", "run"], cwd=tmp_path,
                          env=subprocess_env(LANG="ru_RU.UTF-8"), capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "В TELEGRAM_BOT_TOKEN всё ещё пример из .env.example; получите токен у @BotFather",
        "В AGENT_CHAT_ID всё ещё пример из .env.example; запустите deskbridge init или "
        "добавьте бота в группу агентов и отправьте там /id",
        f"(Настройки читаются из окружения и из файла {tmp_path.resolve() / '.env'}.)",
    ]
    assert not (tmp_path / "deskbridge.db").exists()


async def test_a_migrated_agent_chat_is_followed_at_start(tg: FakeTelegramServer,
                                                          migrated_url: str) -> None:
    """Telegram made the group a supergroup with a new id: no reason to stop
    (the bot follows the new id, bot.telegram.agent_chat_watch)."""
    from bot.startup import preflight
    from tests.bot.conftest import make_settings

    new_id = -1003000000003
    tg.migrate_chat(AGENT_CHAT, new_id)
    facts = await preflight(make_settings(tg, migrated_url, None, http_listen=""))
    # getChat of the old id still answers (only sends are refused with
    # migrate_to_chat_id); either way the start goes on.
    assert facts.chat.id in (AGENT_CHAT, new_id)


def test_every_setting_says_what_a_right_value_is_in_both_languages() -> None:
    """A new setting gets its `config.<name>` words (what a right value looks
    like), or its refusal would fall back to pydantic's English."""
    from bot.i18n import LANGUAGES, catalog

    for lang in LANGUAGES:
        missing = [name for name in Settings.model_fields
                   if f"config.{name}" not in catalog(lang)]
        assert not missing, (lang, missing)
