"""The Telegram side: Telegram's limits (limits.py), the pacer every sending
call waits on (pacer.py), and aiogram's HTTP session with the one send path
(session.py)."""
