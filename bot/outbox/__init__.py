"""The durable outbox: every side effect toward Telegram or the helpdesk is a
row written with the state change that caused it (queue.py), delivered by
the dispatcher (dispatcher.py) through the handler of its kind (telegram.py,
provider.py), with one decision table for failures (decisions.py)."""

from bot.outbox.payloads import Kind
from bot.outbox.queue import (
    OutboxSignal,
    OutboxStatus,
    agent_chat_lane,
    agent_lane,
    card_lane,
    customer_lane,
    enqueue,
    provider_lane,
    refresh_card,
    sync_topic,
    topic_lane,
)

__all__ = [
    "Kind",
    "OutboxSignal",
    "OutboxStatus",
    "agent_chat_lane",
    "agent_lane",
    "card_lane",
    "customer_lane",
    "enqueue",
    "provider_lane",
    "refresh_card",
    "sync_topic",
    "topic_lane",
]
