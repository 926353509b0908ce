"""`deskbridge demo` as a newcomer runs it: a real process in an empty directory,
with no .env and no token, its bot a child process of its own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.bot.conftest import free_port
from tests.sandbox.conftest import GROUP, IVAN, JANE, Browserless, message_in

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 120.0  # a loaded 2-core CI machine, first start


@dataclass
class Demo:
    process: asyncio.subprocess.Process
    output: list[str] = field(default_factory=list)
    url: str = ""

    async def line_matching(self, pattern: str, timeout: float) -> re.Match[str]:
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    raw = await self.process.stdout.readline()
                    if not raw:
                        raise AssertionError("the demo ended:\n" + "".join(self.output))
                    line = raw.decode(errors="replace")
                    self.output.append(line)
                    if match := re.search(pattern, line):
                        return match
        except TimeoutError:
            raise AssertionError(f"no {pattern!r} within {timeout} s:\n"
                                 + "".join(self.output)) from None

    async def finish(self, signum: int = signal.SIGINT, timeout: float = 60.0) -> int:
        """Signal the demo, read the rest of its output, return its exit code."""
        self.process.send_signal(signum)
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            rest = await self.process.stdout.read()
            self.output.append(rest.decode(errors="replace"))
            return await self.process.wait()


@contextlib.asynccontextmanager
async def demo(cwd: Path, *args: str, env: dict[str, str] | None = None
               ) -> AsyncIterator[Demo]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "demo", "--no-browser", *args, cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True)  # a group of its own: nothing is left behind
    running = Demo(process)
    try:
        yield running
    finally:
        if process.returncode is None:  # the test failed midway: stop it, politely first
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # its bot, should it have outlived it
        rest, _ = await process.communicate()  # and the pipe is closed
        running.output.append(rest.decode(errors="replace"))


async def test_a_newcomer_runs_the_demo_in_an_empty_directory(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    port = free_port()
    # Whatever configures a real deployment in this shell must not reach the demo's bot.
    leaked = {"TELEGRAM_BOT_TOKEN": "1:a-real-token", "AGENT_CHAT_ID": "-1",
              "DATABASE_URL": "postgresql+asyncpg://nobody@127.0.0.1:1/none",
              "REDIS_URL": "redis://127.0.0.1:1/0", "WEBHOOK_URL": "https://hook.invalid/x",
              "PROVIDER": "omnidesk", "OMNIDESK_BASE_URL": "http://127.0.0.1:1"}
    async with demo(empty, "--port", str(port), env=leaked) as running:
        await running.line_matching(rf"the page is at http://127\.0\.0\.1:{port} ", 30)
        ready = await running.line_matching(r"ready in ([\d.]+) s: open (\S+)", READY_TIMEOUT)
        assert ready.group(2) == f"http://127.0.0.1:{port}"
        data = await running.line_matching(r"data in (\S+) \(removed at exit\)", 5)
        data_dir = Path(data.group(1))
        assert (data_dir / "deskbridge.db").exists()

        async with (aiohttp.ClientSession() as http,
                    Browserless(ready.group(2), http) as client):
            async with http.get(ready.group(2) + "/") as response:
                assert response.status == 200 and "demo.js" in await response.text()
            state = await client.open_stream()
            assert state["status"] == {"bot": "online"}
            await client.post("/api/send", {"user_id": IVAN, "chat_id": IVAN, "text": "/start"})
            await client.wait_event(message_in(IVAN, "Здравствуйте", bot=True), timeout=30)
            await client.post("/api/send", {"user_id": JANE, "chat_id": JANE,
                                            "text": "The app crashes"})
            await client.wait_event(message_in(GROUP, "The app crashes", bot=True), timeout=30)

        code = await running.finish(signal.SIGINT)
    output = "".join(running.output)
    assert code == 0, output
    assert "Traceback" not in output
    assert "stopping" in output
    assert not await asyncio.to_thread(data_dir.exists)  # the temporary directory goes too
    assert list(empty.iterdir()) == []  # nothing written where it was started


async def test_the_demo_with_a_fake_helpdesk_and_a_kept_directory(tmp_path: Path) -> None:
    port = free_port()
    kept = tmp_path / "kept"
    async with demo(tmp_path, "--port", str(port), "--provider", "omnidesk",
                    "--dir", str(kept), "--agent-language", "ru") as running:
        await running.line_matching(r"ready in", READY_TIMEOUT)
        await running.line_matching(rf"the Omnidesk helpdesk's page is at "
                                    rf"http://127\.0\.0\.1:{port}/helpdesk", 5)
        async with (aiohttp.ClientSession() as http,
                    Browserless(f"http://127.0.0.1:{port}", http) as client):
            state = await client.open_stream()
            assert state["helpdesk"] == {"name": "Omnidesk", "url": "/helpdesk"}
            await client.post("/api/send", {"user_id": JANE, "chat_id": JANE,
                                            "text": "Invoice is wrong"})
            card = await client.wait_event(message_in(GROUP, "Invoice is wrong", bot=True),
                                           timeout=30)
            assert "Статус" in card["message"]["text"]  # --agent-language ru
            async with http.get(client.url + "/api/helpdesk") as response:
                [ticket] = (await response.json())["tickets"]
            assert ticket["messages"][0]["text"] == "Invoice is wrong"
        code = await running.finish(signal.SIGTERM)
    assert code == 0, "".join(running.output)
    assert (kept / "deskbridge.db").exists()  # --dir is the user's: kept


async def test_a_taken_port_is_reported_plainly(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with demo(tmp_path, "--port", str(port)) as running:
            async with asyncio.timeout(60):
                output = (await running.process.communicate())[0].decode()
    assert running.process.returncode == 2, output
    assert f"cannot listen on 127.0.0.1:{port}" in output and "--port" in output
    assert "Traceback" not in output
