"""`deskbridge demo`: try the product with nothing configured.

One process tree: this process runs the sandbox Bot API server on loopback
(bot.sandbox.telegram_server, the same fake the test suite uses), the demo
page (bot.sandbox.page) and, with ``--provider``, that provider's fake helpdesk
(bot.sandbox.desks); the bot runs as a child, ``python -m bot run`` exactly as
in production, with the local desk (or the provider) and SQLite in a temporary
directory. The bot is not told it is in a sandbox: it only sees
``TELEGRAM_API_BASE`` pointing at loopback and a made-up token.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import sys
import tempfile
import time
import webbrowser
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.config import Settings
from bot.sandbox import world
from bot.sandbox.cli import DEFAULT_PORT
from bot.sandbox.desks import DESKS, DemoDesk
from bot.sandbox.page import SandboxPage
from bot.sandbox.telegram_server import FakeTelegramServer

BOT_START_TIMEOUT = 120.0  # a cold first start compiles every module
BOT_STOP_TIMEOUT = 20.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PROVIDER_PREFIXES = ("OMNIDESK_", "ZENLIX_", "PLUSOFON_", "IQSTORE_")


@dataclass(frozen=True, slots=True)
class DemoOptions:
    port: int = DEFAULT_PORT
    open_browser: bool = True
    data_dir: Path | None = None
    provider: str = "local"
    agent_language: str = "en"


def bot_environment(base: Mapping[str, str], *, api_base: str, data_dir: Path,
                    provider: str, agent_language: str,
                    provider_env: Mapping[str, str]) -> dict[str, str]:
    """The child bot's environment: the caller's, minus anything that configures
    deskbridge (a real token or database must not leak into the demo), plus the
    sandbox's settings."""
    ours = {name.upper() for name in Settings.model_fields}
    env = {name: value for name, value in base.items()
           if name.upper() not in ours and not name.upper().startswith(PROVIDER_PREFIXES)}
    env |= {
        "TELEGRAM_BOT_TOKEN": world.TOKEN,
        "TELEGRAM_API_BASE": api_base,
        "AGENT_CHAT_ID": str(world.AGENT_CHAT),
        "AGENT_LANGUAGE": agent_language,
        "DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'deskbridge.db'}",
        "PROVIDER": provider,
        # Replies typed in the helpdesk's page show up within a couple of seconds.
        "POLL_INTERVAL_SECONDS": "2",
        "HTTP_LISTEN": "",  # no health server: nothing to collide with on the machine
        "PYTHONUNBUFFERED": "1",
    }
    return env | dict(provider_env)


def can_open_browser() -> bool:
    """Whether a graphical browser can be shown: on a bare server `webbrowser`
    would start a text-mode one (lynx, w3m) in this very terminal."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def say(text: str) -> None:
    print(f"deskbridge demo: {text}", flush=True)


async def run_demo(options: DemoOptions, *, stop: asyncio.Event | None = None) -> int:
    """Run until `stop` is set, SIGINT/SIGTERM, or the bot exits; returns the exit code."""
    started = time.monotonic()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    # Everything is undone in reverse: the bot stops first, while its Telegram still answers.
    async with contextlib.AsyncExitStack() as undo:
        if options.data_dir is None:
            data_dir = Path(tempfile.mkdtemp(prefix="deskbridge-demo-"))
            undo.callback(shutil.rmtree, data_dir, ignore_errors=True)
        else:
            data_dir = options.data_dir.resolve()
            data_dir.mkdir(parents=True, exist_ok=True)
        server = await undo.enter_async_context(FakeTelegramServer(token=world.TOKEN))
        world.populate(server)
        desk: DemoDesk | None = None
        if options.provider != "local":
            desk = DESKS[options.provider]()
            await desk.start()
            undo.push_async_callback(desk.stop)
        page = SandboxPage(server, desk=desk)
        try:
            await page.start("127.0.0.1", options.port)
        except OSError as exc:
            say(f"cannot listen on 127.0.0.1:{options.port} ({exc.strerror or exc}); "
                "choose another port with --port")
            return 2
        undo.push_async_callback(page.stop)
        say(f"the page is at {page.url} (the bot is starting)")
        env = bot_environment(os.environ, api_base=server.base_url, data_dir=data_dir,
                              provider=options.provider, agent_language=options.agent_language,
                              provider_env=desk.env() if desk else {})
        bot = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", cwd=data_dir, env=env,
            stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        undo.push_async_callback(_stop_bot, bot, page)
        exited = asyncio.ensure_future(bot.wait())
        polling = asyncio.ensure_future(server.wait_for(
            lambda s: s.calls("getUpdates"), timeout=BOT_START_TIMEOUT))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({exited, polling, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            polling.cancel()
            stopping.cancel()
        if exited.done():
            say(f"the bot exited at start (code {bot.returncode}); its log is above")
            return 1
        if stop.is_set():
            return 0
        if polling.cancelled() or polling.exception() is not None:
            say(f"the bot did not start within {BOT_START_TIMEOUT:.0f} s; its log is above")
            return 1
        page.set_status(bot="online")
        say(f"ready in {time.monotonic() - started:.1f} s: open {page.url}")
        if desk is not None:
            say(f"the {desk.title} helpdesk's page is at {page.url}/helpdesk")
        say(f"data in {data_dir}{' (removed at exit)' if options.data_dir is None else ''}; "
            "Ctrl-C stops the demo")
        if options.open_browser and can_open_browser():
            await asyncio.to_thread(webbrowser.open, page.url)
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not stop.is_set():  # (Ctrl-C in a terminal reaches the bot too: not a crash)
            say(f"the bot exited (code {bot.returncode}); its log is above")
            return 1
        say("stopping")
        return 0
    raise AssertionError("unreachable")  # for mypy: the block always returns


def _die_with_parent() -> None:
    """In the bot's process before it starts (Linux): should the demo be killed
    outright, the kernel stops the bot too (PR_SET_PDEATHSIG), rather than leave
    it polling a Telegram that is gone."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


async def _stop_bot(bot: asyncio.subprocess.Process, page: SandboxPage) -> None:
    page.set_status(bot="stopped")
    if bot.returncode is not None:
        return
    # SIGTERM is the bot's own graceful stop (aiogram ends polling, the outbox drains).
    with contextlib.suppress(ProcessLookupError):
        bot.terminate()
    try:
        await asyncio.wait_for(bot.wait(), BOT_STOP_TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            bot.kill()
        await bot.wait()
