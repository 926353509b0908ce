"""Zenlix payloads ⇄ the normalised types of `bridges.base`.

Ids carry their namespace: a ticket is its 32-hex `ticket_hash`; a message
is `<ticket_hash>:<position>`, position 0 being the ticket's own text and
1.. its comments in the server's (oldest first, append-only) order, since
comments have no id of their own (providers/zenlix.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from bridges.base import Priority, RemoteTicket, TicketStatus
from bridges.zenlix.models import Comment, ListedTicket, TicketDetail

SERVER_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
OPENING_POSITION = 0

# `ticket_list`/`ticket_view` statuses, and those lock/ok/no_ok answer with.
_CLOSED = frozenset({"ok", "ok_by_me", "ok_by_other", "arch"})
_PRIORITY_FROM_ZENLIX = {0: Priority.LOW, 1: Priority.NORMAL, 2: Priority.HIGH}
# Zenlix has three priorities; "critical" is its highest.
_PRIORITY_TO_ZENLIX = {Priority.LOW: "0", Priority.NORMAL: "1", Priority.HIGH: "2",
                       Priority.CRITICAL: "2"}


def ticket_status(zenlix_status: str) -> TicketStatus:
    """free and locked tickets are open; done (`ok`) and archived ones closed.
    Zenlix has no "waiting for the customer"."""
    return TicketStatus.CLOSED if zenlix_status in _CLOSED else TicketStatus.OPEN


def normal_status(zenlix_status: str) -> str:
    """One spelling per state: `ok_by_me`/`ok_by_other` are `ok`."""
    return "ok" if zenlix_status.startswith("ok") else zenlix_status


def priority_from_zenlix(prio: int | None) -> Priority:
    return _PRIORITY_FROM_ZENLIX.get(prio if prio is not None else 1, Priority.NORMAL)


def priority_to_zenlix(priority: Priority) -> str:
    return _PRIORITY_TO_ZENLIX[priority]


def parse_server_time(value: str, zone: ZoneInfo) -> datetime | None:
    """Server-local `YYYY-MM-DD HH:MM:SS` → aware UTC; None if unreadable."""
    try:
        local = datetime.strptime(value.strip(), SERVER_TIME_FORMAT)
    except ValueError:
        return None
    return local.replace(tzinfo=zone).astimezone(UTC)


def server_time(epoch: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(epoch, zone).strftime(SERVER_TIME_FORMAT)


def message_id(ticket_hash: str, position: int) -> str:
    return f"{ticket_hash}:{position}"


def comment_fingerprint(comment: Comment) -> str:
    """What identifies a comment besides its position: (author, dt, text)."""
    raw = "\x1f".join((comment.author or "", comment.dt, comment.text))
    return hashlib.sha1(raw.encode(), usedforsecurity=False).hexdigest()[:12]


def text_fingerprint(text: str) -> str:
    """A comment's text, whitespace-insensitive (the server may trim)."""
    folded = " ".join(text.split())
    return hashlib.sha1(folded.encode(), usedforsecurity=False).hexdigest()[:12]


def ticket_signature(status: str, prio: int | None, to_user: str | None,
                     unit: int | None, holder: str) -> str:
    """What `ticket_list` shows of a ticket's state; a change in it is a
    `TicketChanged`. The same for a `ticket_view` by the same account.
    `holder` is the short name of someone else holding the lock: a lock
    passed between two agents leaves the status `lock_by_other`."""
    state = normal_status(status)
    signature = f"{state}|{prio if prio is not None else 1}|{to_user or ''}|" \
                f"{unit if unit is not None else ''}"
    # Only then: the signatures of cursors written before stay the same.
    return f"{signature}|{holder}" if state == "lock_by_other" and holder else signature


def listed_signature(ticket: ListedTicket) -> str:
    return ticket_signature(ticket.status, ticket.prio, ticket.to_user_hash, ticket.to_unit_id,
                            ticket.lock_by_other_fio)


def detail_signature(ticket: TicketDetail) -> str:
    # `lock_by_fio` and ticket_list's `lock_by_other_fio` are the same
    # server function of the holder (nameshort of their name).
    return ticket_signature(ticket.status, ticket.prio, ticket.user_to_id, ticket.unit_id,
                            ticket.lock_by_fio)


def detail_from_listed(ticket: ListedTicket) -> TicketDetail:
    """What a `ticket_list` row says, in `ticket_view`'s shape; it lacks the
    lock holder, so only for free and archived tickets (nobody holds them)."""
    return TicketDetail(
        id_ticket=ticket.id_ticket, ticket_hash=ticket.ticket_hash, status=ticket.status,
        subj=ticket.subj, prio=ticket.prio, text=ticket.text,
        date_created=ticket.date_created, unit_id=ticket.to_unit_id,
        client_id=ticket.client_hash, user_to_id=ticket.to_user_hash,
        user_init_id=ticket.user_init_hash,
    )


@dataclass(frozen=True, slots=True)
class TicketFacts:
    """What the bridge itself knows of a ticket it created (kept in
    BridgeState, see bridge.py): Zenlix has no place for these."""

    customer_ref: str | None = None
    subject: str | None = None


def remote_ticket(
    detail: TicketDetail,
    *,
    zone: ZoneInfo,
    url: str,
    facts: TicketFacts | None = None,
    assignee_name: str | None = None,
) -> RemoteTicket:
    facts = facts or TicketFacts()
    locked_by = detail.lock_by
    return RemoteTicket(
        remote_ticket_id=detail.ticket_hash or "",
        number=str(detail.id_ticket),
        subject=facts.subject or detail.subj or first_line(detail.text) or f"#{detail.id_ticket}",
        status=ticket_status(detail.status),
        priority=priority_from_zenlix(detail.prio),
        remote_customer_id=detail.client_id,
        customer_ref=facts.customer_ref,
        assignee_remote_id=locked_by,
        assignee_name=assignee_name if locked_by else None,
        url=url,
        created_at=parse_server_time(detail.date_created, zone),
        updated_at=None,
    )


def name_key(name: str) -> tuple[str, ...]:
    """A full name in any word order: Zenlix keeps "Surname Name", Telegram
    "Name Surname"."""
    return tuple(sorted(word.casefold() for word in name.split()))


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
