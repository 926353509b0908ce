"""The fake helpdesks as `deskbridge demo --provider NAME` runs them.

Each adapter starts one of the suite's fakes (bot.sandbox.omnidesk, zenlix,
plusofon, iqstore) with a small world of its own, hands the bot the settings
that reach it, and lets the helpdesk page read its tickets and act as the
helpdesk's agent through the fake's own "someone does X in the helpdesk's UI"
helpers, the ones the end-to-end tests use.

A snapshot is ``{"name", "title", "agent", "notes", "close", "tickets": [...]}``;
a ticket ``{"id", "number", "subject", "customer", "closed", "status",
"messages"}``; a message ``{"author", "side", "text", "files": [names]}`` where
side is "customer", "agent", "note", "system" or "relayed" (written by the
bridge's own account for someone else, as Zenlix has the bridge do).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol

from bot.sandbox.iqstore import AGENT_USER, FakeIqstore
from bot.sandbox.omnidesk import FakeOmnidesk
from bot.sandbox.plusofon import SUPPORT_AUTHOR, FakePlusofon
from bot.sandbox.zenlix import CHIEF, FakeZenlix

JsonDict = dict[str, Any]
TAGS = re.compile(r"<[^>]+>")


class DemoDesk(Protocol):
    name: str
    title: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def env(self) -> dict[str, str]: ...

    def snapshot(self) -> JsonDict: ...

    def reply(self, ticket: str, text: str, *, note: bool = False) -> None: ...

    def close(self, ticket: str) -> None: ...

    def reopen(self, ticket: str) -> None: ...


def _plain(html: str) -> str:
    return TAGS.sub("", html.replace("<br>", "\n").replace("</p>", "\n")).strip()


class OmnideskDesk:
    """Customers come through a custom channel (known by their Telegram id)."""

    name, title = "omnidesk", "Omnidesk"
    CHANNEL = "cch7"
    AGENT = ("maria@support.example", "Maria Lebedeva")

    def __init__(self) -> None:
        self.fake = FakeOmnidesk()
        self.fake.add_channel(self.CHANNEL, "Telegram (deskbridge demo)")
        self.staff_id = self.fake.add_staff(*self.AGENT)
        # Omnidesk accounts the Telegram agents can /link to.
        self.fake.add_staff("anna@support.example", "Anna Smirnova")
        self.fake.add_staff("boris@support.example", "Boris Keller")
        self.fake.add_article("Resetting your password",
                              "Open Settings → Account → Reset password; the link is valid "
                              "for one hour.", access_type="public")
        self.fake.add_article("Refunds", "Refunds take 3–5 working days after approval.",
                              access_type="staff_only")

    async def start(self) -> None:
        await self.fake.start()

    async def stop(self) -> None:
        await self.fake.stop()

    def env(self) -> dict[str, str]:
        return self.fake.env(channel=self.CHANNEL)

    def snapshot(self) -> JsonDict:
        store = self.fake.store
        tickets = []
        for case_id, case in sorted(store.cases.items(), reverse=True):
            user = store.users.get(int(case["user_id"]), {})
            messages = []
            for message in self.fake.messages_of(case_id):
                staff = store.staff.get(int(message.get("staff_id") or 0))
                side = "note" if message.get("note") else ("agent" if staff else "customer")
                author = staff["staff_full_name"] if staff else user.get("user_full_name", "")
                text = message.get("content") or _plain(message.get("content_html") or "")
                files = [a.get("file_name", "") for a in message.get("attachments") or []]
                messages.append({"author": author, "side": side, "text": text, "files": files})
            tickets.append({"id": str(case_id), "number": case["case_number"],
                            "subject": case["subject"], "customer": user.get("user_full_name"),
                            "closed": case["status"] == "closed", "status": case["status"],
                            "messages": messages})
        return {"name": self.name, "title": self.title, "agent": self.AGENT[1], "notes": True,
                "close": True, "tickets": tickets}

    def reply(self, ticket: str, text: str, *, note: bool = False) -> None:
        if note:
            self.fake.staff_adds_note(int(ticket), text, staff_id=self.staff_id)
        else:
            self.fake.staff_replies(int(ticket), text, staff_id=self.staff_id)

    def close(self, ticket: str) -> None:
        self.fake.close(int(ticket))

    def reopen(self, ticket: str) -> None:
        self.fake.set_status(int(ticket), "open")


class ZenlixDesk:
    """The bridge signs in as a chief; customers pick a department (unit)."""

    name, title = "zenlix", "ZENLIX"
    SERVICE = ("deskbot", "service-secret-4711")

    def __init__(self) -> None:
        self.fake = FakeZenlix()
        self.fake.add_unit(1, "Support")
        self.fake.add_unit(2, "Billing")
        self.fake.add_subject(1, "General")
        self.service = self.fake.add_staff(*self.SERVICE, "Desk Bot", priv=CHIEF, units=(1, 2))
        self.agent = self.fake.add_staff("olga", "olga-secret", "Olga Petrova", units=(1, 2))
        # Zenlix accounts the Telegram agents can /link to (login and password).
        self.fake.add_staff("anna", "anna-secret", "Anna Smirnova", units=(1, 2))
        self.fake.add_staff("boris", "boris-secret", "Boris Keller", units=(1,))
        self.guest = self.fake.add_client("Telegram Guest")

    async def start(self) -> None:
        await self.fake.start()

    async def stop(self) -> None:
        await self.fake.stop()

    def env(self) -> dict[str, str]:
        return {"ZENLIX_BASE_URL": self.fake.base_url, "ZENLIX_LOGIN": self.SERVICE[0],
                "ZENLIX_PASSWORD": self.SERVICE[1], "ZENLIX_DEFAULT_CLIENT": self.guest,
                "ZENLIX_DEFAULT_SUBJECT": "1"}

    def snapshot(self) -> JsonDict:
        users = self.fake.users
        tickets = []
        for ticket in reversed(self.fake.tickets):
            client = users.get(ticket.client)
            customer = client.fio if client else ""
            messages = [{"author": customer, "side": "customer", "text": _plain(ticket.text),
                         "files": []}]
            for comment in self.fake.comments_of(ticket.hash):
                author = users.get(comment.author)
                side = ("customer" if author is None or author.is_client
                        else "relayed" if comment.author == self.service else "agent")
                messages.append({"author": author.fio if author else "", "side": side,
                                 "text": _plain(comment.text), "files": []})
            status = "closed" if ticket.ok else ("locked" if ticket.lock_by else "open")
            tickets.append({"id": ticket.hash, "number": str(ticket.id),
                            "subject": self.fake.units.get(ticket.unit, ""),
                            "customer": customer, "closed": ticket.ok, "status": status,
                            "messages": messages})
        return {"name": self.name, "title": self.title, "agent": "Olga Petrova",
                "notes": False, "close": True, "tickets": tickets}

    def reply(self, ticket: str, text: str, *, note: bool = False) -> None:
        self.fake.comment_as(self.agent, ticket, text)

    def close(self, ticket: str) -> None:
        self.fake.close_as(self.agent, ticket)

    def reopen(self, ticket: str) -> None:
        self.fake.reopen_as(self.agent, ticket)


class PlusofonDesk:
    """One customer account at Plusofon's support: the bot files every request there."""

    name, title = "plusofon", "Plusofon"

    def __init__(self) -> None:
        self.fake = FakePlusofon()

    async def start(self) -> None:
        await self.fake.start()

    async def stop(self) -> None:
        await self.fake.stop()

    def env(self) -> dict[str, str]:
        return self.fake.env()

    def snapshot(self) -> JsonDict:
        tickets = []
        for ticket in sorted(self.fake.tickets.values(), key=lambda t: t.id, reverse=True):
            messages = []
            for post in ticket.posts:
                support = post.author.get("id") == SUPPORT_AUTHOR["id"]
                messages.append({"author": post.author.get("name", ""),
                                 "side": "agent" if support else "customer",
                                 "text": post.text,
                                 "files": [a.get("filename", "") for a in post.attachments]})
            tickets.append({"id": str(ticket.id), "number": str(ticket.id),
                            "subject": ticket.subject, "customer": "",
                            "closed": not ticket.open,
                            "status": "open" if ticket.open else "closed",
                            "messages": messages})
        return {"name": self.name, "title": self.title, "agent": SUPPORT_AUTHOR["name"],
                "notes": False, "close": True, "tickets": tickets}

    def reply(self, ticket: str, text: str, *, note: bool = False) -> None:
        self.fake.support_answers(ticket, text)

    def close(self, ticket: str) -> None:
        self.fake.close(ticket)

    def reopen(self, ticket: str) -> None:
        self.fake.reopen(ticket)


class IqstoreDesk:
    """Each customer is an iqstore client with one chat; agents answer from a ticket."""

    name, title = "iqstore", "iqstore"

    def __init__(self) -> None:
        self.fake = FakeIqstore()
        self.ticket_of: dict[int, int] = {}  # client id -> the ticket an agent opened

    async def start(self) -> None:
        await self.fake.start()

    async def stop(self) -> None:
        await self.fake.stop()

    def env(self) -> dict[str, str]:
        return self.fake.env(agent_side=True)

    def snapshot(self) -> JsonDict:
        tickets = []
        for client_id, client in sorted(self.fake.clients.items(), reverse=True):
            messages = []
            for message in self.fake.chats.get(client_id, []):
                side = {"client": "customer", "user": "agent"}.get(message["Author"], "system")
                author = client.name if side == "customer" else (
                    AGENT_USER["DisplayName"] if message["UserId"] == AGENT_USER["Id"]
                    else "deskbridge" if side == "agent" else "iqstore")
                file = self.fake.files.get(message.get("FileId") or "")
                messages.append({"author": author, "side": side, "text": message["Text"],
                                 "files": [file.name] if file else []})
            tickets.append({"id": str(client_id), "number": str(client_id),
                            "subject": f"Chat with {client.name}", "customer": client.name,
                            "closed": False, "status": "chat", "messages": messages})
        return {"name": self.name, "title": self.title, "agent": AGENT_USER["DisplayName"],
                "notes": False, "close": False, "tickets": tickets}

    def reply(self, ticket: str, text: str, *, note: bool = False) -> None:
        client_id = int(ticket)
        if client_id not in self.fake.clients:
            raise KeyError(f"no chat {ticket}")
        if client_id not in self.ticket_of:
            self.ticket_of[client_id] = self.fake.open_ticket(client_id)
        self.fake.agent_replies(client_id, text, ticket_id=self.ticket_of[client_id])

    def close(self, ticket: str) -> None:
        raise ValueError("iqstore's chats are not closed")

    def reopen(self, ticket: str) -> None:
        raise ValueError("iqstore's chats are not closed")


DESKS: dict[str, Callable[[], DemoDesk]] = {
    desk.name: desk for desk in (OmnideskDesk, ZenlixDesk, PlusofonDesk, IqstoreDesk)
}
