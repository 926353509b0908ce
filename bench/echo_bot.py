"""The framework's ceiling for `bench.relay`: a bare aiogram echo bot.

Long polling with aiogram's defaults (updates handled as concurrent tasks), no
database, no outbox: each text comes straight back with one sendMessage.

    TELEGRAM_BOT_TOKEN=... TELEGRAM_API_BASE=http://127.0.0.1:port python -m bench.echo_bot
"""

from __future__ import annotations

import asyncio
import os

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Message


async def main() -> None:
    session = AiohttpSession(api=TelegramAPIServer.from_base(os.environ["TELEGRAM_API_BASE"]))
    bot = Bot(os.environ["TELEGRAM_BOT_TOKEN"], session=session)
    dispatcher = Dispatcher()

    @dispatcher.message()
    async def echo(message: Message) -> None:
        await message.answer(message.text or "?")

    await dispatcher.start_polling(bot)


if __name__ == "__main__":
    asyncio.run(main())
