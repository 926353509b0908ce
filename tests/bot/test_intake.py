"""Before a ticket opens: the contact a provider needs, the department the
customer picks. A local desk that behaves like such a provider stands in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest
from sqlalchemy import select

from bot.app import App
from bot.db.models import Customer, Ticket
from bot.db.session import create_engine
from bot.sandbox.telegram_server import FakeTelegramServer
from bridges.base import Capabilities, Capability, CustomerIdentity, Department
from bridges.local import LocalDeskBridge
from tests.bot.conftest import AGENT_CHAT, JANE, callback_data_of, find, make_settings, running


class PickyDesk(LocalDeskBridge):
    """Needs a phone or e-mail to know a customer, and files by department."""

    capabilities: Capabilities = LocalDeskBridge.capabilities | {Capability.DEPARTMENTS}

    def missing_contact(self, customer: CustomerIdentity) -> bool:
        return not (customer.phone or customer.email)

    async def list_departments(self) -> Sequence[Department]:
        return [Department("10", "Billing"), Department("20", "Tech support")]


@pytest.fixture
async def picky_app(tg: FakeTelegramServer, migrated_url: str, redis_url: str | None
                    ) -> AsyncIterator[App]:
    engine = create_engine(migrated_url)
    try:
        async with running(make_settings(tg, migrated_url, redis_url),
                           bridge=PickyDesk(engine)) as app:
            yield app
    finally:
        await engine.dispose()


async def ticket_row(app: App) -> Ticket | None:
    async with app.sessionmaker() as session:
        return await session.scalar(select(Ticket))


async def test_contact_then_department_then_ticket(tg: FakeTelegramServer, picky_app: App
                                                   ) -> None:
    tg.user_sends_text(JANE, JANE, "My invoice is wrong")
    ask = await tg.wait_for(lambda s: find(s.sent_to(JANE), "phone number or e-mail"))
    assert ask["reply_markup"]["keyboard"][0][0]["request_contact"] is True
    assert await ticket_row(picky_app) is None  # waiting, not lost

    tg.user_sends(JANE, JANE, contact={"phone_number": "79001234567", "first_name": "Jane",
                                       "user_id": JANE})
    question = await tg.wait_for(lambda s: find(s.sent_to(JANE), "Which department"))
    tg.user_presses(JANE, (JANE, question["message_id"]), callback_data_of(question, "Billing"))
    card = await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "My invoice is wrong"))
    assert card is not None
    ticket = await ticket_row(picky_app)
    assert ticket is not None and ticket.department_id == "10"
    async with picky_app.sessionmaker() as session:
        assert await session.scalar(select(Customer.phone)) == "+79001234567"


async def test_an_e_mail_will_do_and_someone_elses_contact_will_not(
    tg: FakeTelegramServer, picky_app: App
) -> None:
    tg.user_sends_text(JANE, JANE, "Hello")
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "phone number or e-mail"))
    tg.user_sends(JANE, JANE, contact={"phone_number": "+1555", "first_name": "Bob",
                                       "user_id": 777})
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "your own contact"))
    tg.user_sends_text(JANE, JANE, "jane@example.com")
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "Which department"))
    async with picky_app.sessionmaker() as session:
        customer = await session.scalar(select(Customer))
        assert customer is not None
        assert (customer.email, customer.phone) == ("jane@example.com", None)


async def test_forged_department_is_refused(tg: FakeTelegramServer, picky_app: App) -> None:
    tg.user_sends(JANE, JANE, contact={"phone_number": "+1555", "first_name": "Jane",
                                       "user_id": JANE})
    tg.user_sends_text(JANE, JANE, "Anything")
    question = await tg.wait_for(lambda s: find(s.sent_to(JANE), "Which department"))
    draft_id = callback_data_of(question, "Billing").split(":")[1]
    query = tg.user_sends_forged_callback(JANE, JANE, question["message_id"],
                                          f"d:{draft_id}:99")
    await tg.wait_for(lambda s: query in s.callback_answers)
    assert await ticket_row(picky_app) is None


async def test_deep_link_preselects_the_department(tg: FakeTelegramServer, picky_app: App
                                                   ) -> None:
    tg.user_sends(JANE, JANE, contact={"phone_number": "+1555", "first_name": "Jane",
                                       "user_id": JANE})
    tg.user_sends_text(JANE, JANE, "/start 20")
    await tg.wait_for(lambda s: find(s.sent_to(JANE), "Describe your problem"))
    tg.user_sends_text(JANE, JANE, "Wi-Fi drops")
    await tg.wait_for(lambda s: find(s.sent_to(AGENT_CHAT), "Wi-Fi drops"))
    ticket = await ticket_row(picky_app)
    assert ticket is not None and ticket.department_id == "20"
    assert not find(tg.sent_to(JANE), "Which department")
