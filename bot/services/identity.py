"""The bot's people as the provider contract sees them."""

from __future__ import annotations

from bot.db.models import Agent, Customer
from bridges import base


def customer_identity(customer: Customer) -> base.CustomerIdentity:
    return base.CustomerIdentity(
        customer_ref=str(customer.tg_user_id), full_name=customer.full_name,
        username=customer.username, phone=customer.phone, email=customer.email,
        language=customer.language, remote_customer_id=customer.remote_customer_id)


def agent_identity(agent: Agent | None, fallback_name: str | None) -> base.AgentIdentity:
    """An agent known to the bot, or (for messages without one) the bot itself."""
    if agent is None:
        return base.AgentIdentity(agent_ref="bot", full_name=fallback_name or "Support")
    return base.AgentIdentity(agent_ref=str(agent.tg_user_id), full_name=agent.full_name,
                              remote_agent_id=agent.remote_agent_id)
