"""What the benchmarks share: a scratch database, the bot as a real process,
and machine facts for the tables."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from sqlalchemy import text

from bot.db.migrate import upgrade
from bot.db.session import create_engine

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "123456:BENCH-token"
AGENT_CHAT = -1009000000001


@contextlib.asynccontextmanager
async def scratch_database(url: str | None, name: str) -> AsyncIterator[str]:
    """A migrated, empty database for one benchmark run: a temporary SQLite
    file, or (given a PostgreSQL URL) a database of its own on that server,
    dropped afterwards."""
    if not url or not url.startswith("postgresql"):
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite+aiosqlite:///{Path(folder) / f'{name}.db'}"
            await asyncio.to_thread(upgrade, url)
            yield url
        return
    base, _, admin_db = url.rpartition("/")
    private = f"bench_{name}_{os.getpid()}"
    admin = create_engine(f"{base}/{admin_db}", isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{private}" WITH (FORCE)'))
            await connection.execute(text(f'CREATE DATABASE "{private}"'))
        await asyncio.to_thread(upgrade, f"{base}/{private}")
        yield f"{base}/{private}"
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{private}" WITH (FORCE)'))
        await admin.dispose()


def bot_env(api_base: str, database_url: str, *, provider: str = "local",
            **extra: str) -> dict[str, str]:
    """The environment of `python -m bot run` against the fake Bot API server
    at `api_base` (no health server unless HTTP_LISTEN is given in `extra`)."""
    return {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE": api_base,
            "AGENT_CHAT_ID": str(AGENT_CHAT), "DATABASE_URL": database_url,
            "PROVIDER": provider, "POLL_INTERVAL_SECONDS": "1", "AGENT_LANGUAGE": "en",
            "HTTP_LISTEN": "", "LOG_LEVEL": "WARNING", **extra}


def start_process(module: str, env: Mapping[str, str], log: Path,
                  *args: str) -> subprocess.Popen[bytes]:
    """`python -m module args` with exactly `env` (plus PATH and PYTHONPATH)."""
    full = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env}
    command = [sys.executable, "-m", module, *args]
    if profile := os.environ.get("BENCH_PROFILE"):  # a folder for pyinstrument's reports
        report = Path(profile) / f"{log.stem}-{os.getpid()}.txt"
        command[1:1] = ["-m", "pyinstrument", "-r", "text", "-o", str(report)]
    with log.open("ab") as output:
        return subprocess.Popen(command, cwd=log.parent, env=full,
                                stdout=output, stderr=subprocess.STDOUT)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def machine() -> str:
    """One line naming the machine, for the tables in the README."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (f"{model or platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}")
