"""The sandbox Telegram: a Bot API server of our own on loopback.

One implementation with two uses: the test suite's fake Bot API server, and the
embedded Telegram of ``deskbridge demo`` (a newcomer tries the product without a
token or network access). The bot itself only sees ``TELEGRAM_API_BASE``.
"""
