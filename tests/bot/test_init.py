"""`deskbridge init` driven end to end against the fake Bot API server: the
token checked with getMe, the group found from the my_chat_member update
Telegram sends when the bot is added, its rights checked (and checked again
after a fix), the provider's settings asked and checked, `.env` written (never
replaced without asking), and the result good enough for `deskbridge check`."""

from __future__ import annotations

import asyncio
import io
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dotenv import dotenv_values

from bot.__main__ import _parser, main
from bot.init import dotenv_line, run_init
from bot.sandbox.omnidesk import FakeOmnidesk
from bot.sandbox.telegram_server import FakeTelegramServer
from tests.bot.conftest import ANNA, TOKEN, populate

ROOT = Path(__file__).resolve().parents[2]
GROUP = -1004000000004


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in list(os.environ):
        if name.startswith(("TELEGRAM_", "AGENT_", "PROVIDER", "OMNIDESK_", "DATABASE_URL",
                            "LANGUAGE", "LC_", "TIMEZONE")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.chdir(tmp_path)
    yield tmp_path


@pytest.fixture
async def server() -> Iterator[FakeTelegramServer]:
    async with FakeTelegramServer(token=TOKEN) as fake:
        populate(fake)
        yield fake


class Terminal:
    """stdin and stdout of `run_init` in a thread: the test answers when the
    prompt it expects has appeared."""

    def __init__(self) -> None:
        self.answers: queue.Queue[str] = queue.Queue()
        self.output = io.StringIO()
        self._lock = threading.Lock()
        self.stdin = self
        self.stdout = self

    # stdin
    def readline(self) -> str:
        return self.answers.get(timeout=60)

    def isatty(self) -> bool:
        return False

    # stdout
    def write(self, text: str) -> int:
        with self._lock:
            return self.output.write(text)

    def flush(self) -> None:
        pass

    def text(self) -> str:
        with self._lock:
            return self.output.getvalue()

    async def expect(self, words: str, timeout: float = 30) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while words not in self.text():
            assert loop.time() < deadline, f"waited for {words!r}; the terminal shows:\n" + (
                self.text())
            await asyncio.sleep(0.02)

    async def answer(self, prompt: str, line: str) -> None:
        await self.expect(prompt)
        self.answers.put(line + "\n")


def start_process(args: list[str], folder: Path, env: dict[str, str], answers: str
                  ) -> subprocess.Popen[str]:
    """`python -m bot ARGS` reading `answers` from a pipe."""
    process = subprocess.Popen([sys.executable, "-m", "bot", *args], cwd=folder, env=env,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    assert process.stdin is not None
    process.stdin.write(answers)
    process.stdin.flush()
    return process


def start_init(terminal: Terminal, *options: str) -> asyncio.Future[int]:
    args = _parser().parse_args(["init", *options])
    return asyncio.ensure_future(asyncio.to_thread(run_init, args, stdin=terminal.stdin,
                                                   stdout=terminal.stdout))  # type: ignore[arg-type]


async def test_interactive_set_up_from_token_to_env(
    workdir: Path, server: FakeTelegramServer
) -> None:
    terminal = Terminal()
    done = start_init(terminal, "--api-base", server.base_url)
    await terminal.answer("The bot's token", "42:a-token-of-another-bot")
    await terminal.expect("Telegram refused that token")
    await terminal.answer("The bot's token", TOKEN)
    await terminal.expect("Token accepted: this is @deskbridge_test_bot (Deskbridge).")

    # The operator adds the bot to a new group, as a plain member first.
    await terminal.expect("Now add @deskbridge_test_bot to your agents' supergroup")
    await server.wait_for(lambda s: s.calls("getUpdates"))
    server.add_bot_to_group(ANNA, GROUP, "Support desk", status="member")
    await terminal.expect(f"The bot was added to Support desk (id {GROUP}) by Anna.")
    await terminal.expect("[!!] the bot is a member of the agent chat, not an administrator")
    # They make it an administrator and ask to check again.
    server.set_bot_status(ANNA, GROUP, "administrator")
    await terminal.answer("press y and Enter to check again", "y")
    await terminal.expect("[ok] the bot may delete messages")

    await terminal.answer("Helpdesk:", "")  # local, the default
    await terminal.answer("Language of the bot in the agent chat", "en")
    assert await done == 0
    assert terminal.text().rstrip().endswith(
        "Next: deskbridge check (it checks everything, the helpdesk too), then deskbridge run.")
    assert TOKEN not in terminal.text()  # the token is never shown back

    written = dotenv_values(workdir / ".env")
    assert written == {
        "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE": server.base_url,
        "AGENT_CHAT_ID": str(GROUP), "AGENT_LANGUAGE": "en",
        "DATABASE_URL": "sqlite+aiosqlite:///deskbridge.db", "PROVIDER": "local"}
    assert (workdir / ".env").stat().st_mode & 0o077 == 0  # secrets: the owner's only
    # Only my_chat_member updates were asked for while waiting.
    assert server.calls("getUpdates")[0]["allowed_updates"] == ["my_chat_member"]


async def test_init_then_check_in_a_real_process(workdir: Path,
                                                 server: FakeTelegramServer) -> None:
    """`deskbridge init` as a process reading a pipe, then `deskbridge check
    --migrate` on what it wrote: exit code 0."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8",
           "TELEGRAM_API_BASE": server.base_url}
    process = start_process(["init"], workdir, env, answers=f"{TOKEN}\nlocal\nru\n")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while not server.calls("getUpdates"):  # init waits for the bot to be added
        assert process.poll() is None and loop.time() < deadline
        await asyncio.sleep(0.05)
    server.add_bot_to_group(ANNA, GROUP, "Поддержка")
    output, _ = await asyncio.to_thread(process.communicate, None, 60)
    assert process.returncode == 0, output
    assert f"The bot was added to Поддержка (id {GROUP}) by Anna." in output
    assert "Traceback" not in output and TOKEN not in output

    checked = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "bot", "check", "--migrate"], cwd=workdir,
        env={k: v for k, v in env.items() if k != "TELEGRAM_API_BASE"},
        capture_output=True, text=True, timeout=120, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "[ok] agent chat: Поддержка" in checked.stdout
    assert checked.stdout.rstrip().endswith("All good: the bot has everything it needs.")


async def test_without_questions(workdir: Path, server: FakeTelegramServer,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    async with FakeOmnidesk() as desk:
        options = ["init", "--no-input", "--api-base", server.base_url, "--token", TOKEN,
                   "--agent-chat-id", str(-1001000000001), "--provider", "omnidesk",
                   "--timezone", "Europe/Moscow"]
        settings = [f"--set={name}={value}" for name, value in desk.env().items()]
        code = await asyncio.to_thread(main, options + settings[:1])
        out = capsys.readouterr()
        assert code == 2
        assert "OMNIDESK_STAFF_EMAIL is not set" in out.err
        assert not (workdir / ".env").exists()

        code = await asyncio.to_thread(main, options + settings)
        assert code == 0, capsys.readouterr()
    written = dotenv_values(workdir / ".env")
    assert written["PROVIDER"] == "omnidesk" and written["TIMEZONE"] == "Europe/Moscow"
    assert written["OMNIDESK_API_KEY"] == desk.api_key
    assert written["AGENT_CHAT_ID"] == "-1001000000001"


async def test_an_existing_env_is_never_replaced_without_asking(
    workdir: Path, server: FakeTelegramServer, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / ".env").write_text("WEBHOOK_URL=https://bot.example/hook\nPROVIDER=local\n")
    options = ["init", "--no-input", "--api-base", server.base_url, "--token", TOKEN,
               "--agent-chat-id", "-1001000000001"]
    assert await asyncio.to_thread(main, options) == 0
    out = capsys.readouterr().out
    assert (workdir / ".env").read_text() == (
        "WEBHOOK_URL=https://bot.example/hook\nPROVIDER=local\n")
    new = dotenv_values(workdir / ".env.new")
    assert new["TELEGRAM_BOT_TOKEN"] == TOKEN
    assert new["WEBHOOK_URL"] == "https://bot.example/hook"  # kept from the old file
    assert ".env was left as it was" in out

    assert await asyncio.to_thread(main, [*options, "--force"]) == 0
    assert dotenv_values(workdir / ".env")["AGENT_CHAT_ID"] == "-1001000000001"
    assert dotenv_values(workdir / ".env")["WEBHOOK_URL"] == "https://bot.example/hook"

    # Asked on a terminal: "no" leaves the file and writes beside it.
    terminal = Terminal()
    done = start_init(terminal, "--api-base", server.base_url, "--agent-chat-id",
                      "-1001000000001", "--provider", "local", "--agent-language", "en")
    await terminal.answer("The bot's token", "")  # Enter keeps the one in .env
    before = (workdir / ".env").read_text()
    await terminal.answer("Replace it", "n")
    assert await done == 0
    assert (workdir / ".env").read_text() == before
    assert dotenv_values(workdir / ".env.new")["AGENT_LANGUAGE"] == "en"
    assert TOKEN not in terminal.text()  # the kept token was shown as ***


async def test_waiting_without_questions(workdir: Path, server: FakeTelegramServer,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    options = ["init", "--no-input", "--api-base", server.base_url, "--token", TOKEN]
    assert await asyncio.to_thread(main, options) == 2
    assert "--agent-chat-id is needed" in capsys.readouterr().err
    waiting = asyncio.ensure_future(asyncio.to_thread(main, [*options, "--wait", "30"]))
    await server.wait_for(lambda s: s.calls("getUpdates"))
    server.add_bot_to_group(ANNA, GROUP, "Agents", can_manage_topics=False)
    assert await waiting == 1  # written, but the group needs a fix
    out = capsys.readouterr().out
    assert "[!!] the bot may not manage topics" in out
    assert "Fix what the lines marked [!!] say" in out
    assert dotenv_values(workdir / ".env")["AGENT_CHAT_ID"] == str(GROUP)


async def test_a_webhook_is_removed_only_when_the_operator_agrees(
    workdir: Path, server: FakeTelegramServer
) -> None:
    server.webhook_url = "https://bot.example/hook"
    terminal = Terminal()
    done = start_init(terminal, "--api-base", server.base_url, "--token", TOKEN)
    await terminal.answer("Remove the webhook for now", "y")
    await terminal.expect("Now add @deskbridge_test_bot")
    assert server.webhook_url == ""
    server.add_bot_to_group(ANNA, GROUP, "Agents")
    await terminal.answer("Helpdesk:", "local")
    await terminal.answer("Language of the bot", "ru")
    assert await done == 0


def test_dotenv_lines_read_back_exactly(tmp_path: Path) -> None:
    values = {"A": "plain", "B": "with space", "C": 'quote " and \\ backslash', "D": "#hash",
              "E": "{customer_ref}:secret", "F": "", "G": "x=y"}
    path = tmp_path / ".env"
    path.write_text("\n".join(dotenv_line(k, v) for k, v in values.items()) + "\n")
    assert dotenv_values(path) == values


def test_in_russian(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LANG", "ru_RU.UTF-8")
    assert main(["init", "--no-input"]) == 2
    assert capsys.readouterr().err.strip() == "Нужен --token (токен бота от @BotFather)."


def _spawn_on_terminal(args: list[str], folder: Path, env: dict[str, str]
                       ) -> tuple[subprocess.Popen[bytes], int]:
    """`python -m bot ARGS` with a pseudo-terminal as its stdin and stdout;
    returns the process and the terminal's other end."""
    import pty

    controller, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "bot", *args], cwd=folder, env=env,
                               stdin=terminal, stdout=terminal, stderr=terminal,
                               start_new_session=True)
    os.close(terminal)
    return process, controller


def _read_terminal(controller: int, until: str, timeout: float = 60) -> str:
    import select
    import time

    seen = b""
    deadline = time.monotonic() + timeout
    while until.encode() not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"waited for {until!r}; the terminal shows {seen.decode()!r}"
        ready, _, _ = select.select([controller], [], [], remaining)
        if ready:
            try:
                seen += os.read(controller, 4096)
            except OSError:  # the process ended
                break
    return seen.decode(errors="replace")


async def test_the_token_is_not_echoed_on_a_terminal(workdir: Path,
                                                     server: FakeTelegramServer) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8",
           "TELEGRAM_API_BASE": server.base_url}
    process, controller = _spawn_on_terminal(["init"], workdir, env)
    try:
        await asyncio.to_thread(_read_terminal, controller, "the input is hidden):")
        os.write(controller, f"{TOKEN}\n".encode())
        shown = await asyncio.to_thread(_read_terminal, controller, "Waiting for Telegram")
        assert "Token accepted" in shown
        assert TOKEN not in shown and "TEST-token" not in shown  # getpass: no echo
        server.add_bot_to_group(ANNA, GROUP, "Agents")
        await asyncio.to_thread(_read_terminal, controller, "Helpdesk:")
        os.write(controller, b"local\n")
        await asyncio.to_thread(_read_terminal, controller, "Language of the bot")
        os.write(controller, b"en\n")
        shown = await asyncio.to_thread(_read_terminal, controller, "Next: deskbridge check")
        assert shown.startswith("en\r\n")  # ordinary answers are echoed as typed
        assert await asyncio.to_thread(process.wait, 30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)
    assert dotenv_values(workdir / ".env")["TELEGRAM_BOT_TOKEN"] == TOKEN
