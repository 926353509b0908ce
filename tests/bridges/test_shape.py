"""The shape every bridge shares: the base class and its capability-gated
defaults, the registry that finds provider subpackages, and provider
settings read from the environment and `.env`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from bridges.base import (
    AgentIdentity,
    Attachment,
    BridgeBase,
    Capability,
    Changes,
    CheckReport,
    CustomerIdentity,
    NewTicket,
    Priority,
    RemoteMessage,
    RemoteTicket,
    TicketStatus,
    TicketUpdate,
)
from bridges.content import check_update, checked_files, subject_of
from bridges.errors import Invalid
from bridges.registry import BridgeDeps, available, create_bridge, providers
from bridges.zenlix import ZenlixBridge, ZenlixSettings
from tests.bridges.harness_zenlix import bridge_state_database


class Minimal(BridgeBase):
    """A provider that can only open tickets and take customers' messages."""

    name = "minimal"
    capabilities = frozenset({Capability.CREATE, Capability.REPLY_AS_CUSTOMER})

    async def check(self) -> CheckReport:
        return CheckReport(ok=True, lines=[])

    async def create_ticket(self, ticket: NewTicket) -> RemoteTicket:
        return RemoteTicket("1", "1", ticket.subject, TicketStatus.OPEN)

    async def get_ticket(self, remote_ticket_id: str) -> RemoteTicket:
        return RemoteTicket(remote_ticket_id, remote_ticket_id, "s", TicketStatus.OPEN)

    async def post_customer_message(self, remote_ticket_id: str, customer: CustomerIdentity,
                                    text: str, attachments: Sequence[Attachment] = (),
                                    idempotency_key: str | None = None) -> RemoteMessage:
        raise NotImplementedError

    async def fetch_changes(self, cursor: str | None) -> Changes:
        return Changes(events=(), cursor="0")


AGENT = AgentIdentity("tg:1", "Olga")


async def test_what_a_bridge_lacks_is_refused_or_empty() -> None:
    bridge = Minimal()
    for call in (bridge.post_agent_reply("1", AGENT, "hi"), bridge.post_note("1", AGENT, "hi"),
                 bridge.update_ticket("1", TicketUpdate(status=TicketStatus.CLOSED)),
                 bridge.refer("1", "Billing")):
        with pytest.raises(Invalid, match="minimal has no"):
            await call
    assert await bridge.list_departments() == []
    assert await bridge.search_articles("x", for_agent=True) == []
    assert await bridge.find_agent("olga") is None
    assert not bridge.missing_contact(CustomerIdentity("tg:2", "Anna"))
    assert bridge.calls_left() is None
    erased = await bridge.erase_customer("tg:2", ["1"])
    assert (erased.messages, erased.complete) == (0, False)
    await bridge.aclose()


def test_a_declared_capability_must_be_implemented() -> None:
    with pytest.raises(TypeError, match="post_note"):
        type("Noteless", (Minimal,), {"capabilities": frozenset({Capability.NOTES})})
    with pytest.raises(TypeError, match="update_ticket"):
        type("Stuck", (Minimal,), {"capabilities": frozenset({Capability.PRIORITY})})


def test_content_rules() -> None:
    with pytest.raises(Invalid):
        checked_files("  ", [], provider="x", needs_bytes=False)
    assert subject_of("", "First line\nsecond") == "First line"
    assert subject_of("", "  ") == "(no subject)"
    assert len(subject_of("x" * 300, "")) == 255
    everything = frozenset(Capability)
    with pytest.raises(Invalid, match="assign and unassign"):
        check_update(TicketUpdate(assignee=AGENT, unassign=True), everything, provider="x")
    with pytest.raises(Invalid, match="priority"):
        check_update(TicketUpdate(priority=Priority.HIGH), frozenset(), provider="x")
    check_update(TicketUpdate(unassign=True), everything, provider="x")


def test_the_registry_finds_every_subpackage() -> None:
    assert providers() == ["iqstore", "local", "omnidesk", "plusofon", "zenlix"]
    assert available() == providers()


ZENLIX_DOTENV = ("ZENLIX_BASE_URL=https://desk.example.com/zenlix/\n"
                 "ZENLIX_LOGIN=deskbot\nZENLIX_PASSWORD=from-dotenv-secret\n"
                 "ZENLIX_CALLS_PER_CYCLE=30\n")


async def test_provider_settings_come_from_dotenv_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no settings handed over, a provider reads the environment and
    `.env` in the working directory, the environment winning."""
    (tmp_path / ".env").write_text(ZENLIX_DOTENV)
    monkeypatch.chdir(tmp_path)
    for name in ("ZENLIX_BASE_URL", "ZENLIX_LOGIN", "ZENLIX_PASSWORD", "ZENLIX_CALLS_PER_CYCLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ZENLIX_CALLS_PER_CYCLE", "40")
    async with bridge_state_database(tmp_path) as engine:
        bridge = await create_bridge("zenlix", BridgeDeps(engine=engine))
        try:
            assert isinstance(bridge, ZenlixBridge)
            assert bridge.settings.base_url == "https://desk.example.com/zenlix"
            assert bridge.settings.password.get_secret_value() == "from-dotenv-secret"
            assert bridge.settings.calls_per_cycle == 40
        finally:
            await bridge.aclose()


def test_settings_handed_over_are_all_that_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(ZENLIX_DOTENV)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZENLIX_DEFAULT_SUBJECT", "from the environment")
    settings = ZenlixSettings.from_env({"ZENLIX_BASE_URL": "http://zenlix.test",
                                        "ZENLIX_LOGIN": "bot", "ZENLIX_PASSWORD": "p"})
    assert (settings.calls_per_cycle, settings.default_subject) == (50, None)
    with pytest.raises(ValueError) as raised:
        ZenlixSettings.from_env({"ZENLIX_BASE_URL": "http://zenlix.test"})
    assert "ZENLIX_LOGIN" in str(raised.value) and "ZENLIX_PASSWORD" in str(raised.value)
