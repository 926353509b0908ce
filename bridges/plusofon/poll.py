"""Polling Plusofon (`fetch_changes`).

The open list (one object for one ticket, a list for several) says which
tickets changed (`lastactivity`, `replies`, `unread_messages`); only those
are read, within `PLUSOFON_POLL_BUDGET` reads; a ticket gone from the open
list costs one read of the closed list (providers/plusofon.md). The bridge's
own posts are recognised by post id (`own:<post id>`, records.py) and
carry the key they were written with.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bridges.base import (
    ChangeEvent,
    Changes,
    MessageAdded,
    RemoteTicket,
    TicketChanged,
    TicketStatus,
)
from bridges.errors import Invalid, NotFound
from bridges.plusofon.client import PROVIDER, PlusofonClient
from bridges.plusofon.config import PlusofonSettings
from bridges.plusofon.cursor import PlusofonCursor, TicketMark
from bridges.plusofon.mapping import (
    message_from_post,
    requester_id,
    status_of,
    ticket_from_full,
    ticket_from_summary,
)
from bridges.plusofon.models import Post, TicketFull, TicketSummary
from bridges.plusofon.records import Owner, as_int, owner_of
from bridges.state import BridgeState


@dataclass(slots=True)
class _Candidate:
    """A ticket whose list entry differs from what the cursor knew."""

    ticket_id: str
    summary: TicketSummary | None  # its entry in the open (or closed) list
    mark: TicketMark | None  # None: never seen
    was: TicketStatus | None
    listed_open: bool

    @property
    def activity(self) -> int:
        if self.summary is not None:
            return self.summary.lastactivity
        return self.mark.activity if self.mark else 0


@dataclass(slots=True)
class _Seen:
    """What one changed ticket turned out to hold."""

    candidate: _Candidate
    status: TicketStatus
    full: TicketFull | None = None
    new_posts: list[Post] = field(default_factory=list)


class Poller:
    def __init__(self, client: PlusofonClient, state: BridgeState, settings: PlusofonSettings,
                 *, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._state = state
        self._settings = settings
        self._clock = clock

    async def fetch_changes(self, cursor: str | None) -> Changes:
        known = None if cursor is None else _parse_cursor(cursor)
        listed = {t.ticket_id: t for t in await self._client.list_tickets(open_tickets=True)}
        now = self._clock()
        if known is None:
            # Start from now: remember every open ticket, report nothing.
            start = PlusofonCursor(open={tid: TicketMark.of(t, "") for tid, t in listed.items()})
            return Changes(events=(), cursor=start.dump(now))
        candidates = self._candidates(known, listed)
        vanished = [tid for tid in known.open if tid not in listed]
        if vanished:
            # Gone from the open list: closed, most likely. One more list call.
            closed = {t.ticket_id: t for t in await self._client.list_tickets(open_tickets=False)}
            candidates += [_Candidate(tid, closed.get(tid), known.open[tid], TicketStatus.OPEN,
                                      listed_open=False) for tid in vanished]
        candidates.sort(key=lambda c: (c.activity, as_int(c.ticket_id)))
        following = PlusofonCursor(open=dict(known.open), closed=dict(known.closed))
        seen, more = await self._read(candidates, following)
        events = await self._events(seen)
        return Changes(events=events, cursor=following.dump(now), more=more)

    @staticmethod
    def _candidates(known: PlusofonCursor, listed: dict[str, TicketSummary]) -> list[_Candidate]:
        found = []
        for tid, summary in listed.items():
            mark = known.open.get(tid)
            if mark is not None:
                if not mark.matches(summary):
                    found.append(_Candidate(tid, summary, mark, TicketStatus.OPEN, True))
                continue
            # Closed before and listed again (reopened), or never seen (new).
            mark = known.closed.get(tid)
            was = TicketStatus.CLOSED if mark is not None else None
            found.append(_Candidate(tid, summary, mark, was, True))
        return found

    async def _read(
        self, candidates: list[_Candidate], following: PlusofonCursor
    ) -> tuple[list[_Seen], bool]:
        """Read the changed tickets, oldest change first, within the budget;
        the cursor (`following`) advances only past what was read."""
        seen: list[_Seen] = []
        reads = 0
        for candidate in candidates:
            quiet_close = (not candidate.listed_open and candidate.summary is not None
                           and candidate.mark is not None
                           and candidate.mark.same_posts(candidate.summary))
            if quiet_close:
                # In the closed list with nothing new written: no read needed.
                assert candidate.mark is not None
                seen.append(_Seen(candidate, TicketStatus.CLOSED))
                _advance(following, candidate, TicketStatus.CLOSED, candidate.mark.last_post)
                continue
            if reads >= self._settings.poll_budget:
                return seen, True
            reads += 1
            try:
                full = await self._client.get_ticket(candidate.ticket_id)
            except NotFound:
                following.open.pop(candidate.ticket_id, None)  # deleted: forget it
                following.closed.pop(candidate.ticket_id, None)
                continue
            status = status_of(full.status)
            new_posts = _new_posts(full, candidate)
            last = full.posts[-1].id if full.posts else (
                candidate.mark.last_post if candidate.mark else "")
            _advance(following, candidate, status, last)
            seen.append(_Seen(candidate, status, full, new_posts))
        return seen, False

    async def _events(self, seen: list[_Seen]) -> list[ChangeEvent]:
        owners = await self._state.get_many(f"ticket:{s.candidate.ticket_id}" for s in seen)
        own = await self._state.get_many(f"own:{post.id}" for s in seen for post in s.new_posts)
        events: list[ChangeEvent] = []
        for item in seen:
            tid = item.candidate.ticket_id
            owner = owner_of(owners.get(f"ticket:{tid}"))
            change = None
            if item.candidate.was is not item.status:
                remote = self._remote_ticket(item, owner)
                # The bridge's own creation carries its key, like the opening post.
                change = TicketChanged(remote, origin_key=(
                    owner.create_key if item.candidate.was is None else None))
            if change is not None and item.status is TicketStatus.OPEN:
                events.append(change)
            customer_author = requester_id(item.full) if item.full else None
            for post in item.new_posts:
                key = own.get(f"own:{post.id}")
                by_customer = key is not None or post.author.id == customer_author
                events.append(MessageAdded(message_from_post(
                    post, tid, by_customer=by_customer, origin_key=key or None,
                    text=_without_head(post, owner))))
            if change is not None and item.status is TicketStatus.CLOSED:
                events.append(change)  # after the closing answer
        return events

    @staticmethod
    def _remote_ticket(item: _Seen, owner: Owner) -> RemoteTicket:
        summary = item.candidate.summary
        if item.full is not None:
            return ticket_from_full(item.full, customer_ref=owner.customer_ref, summary=summary)
        assert summary is not None
        return ticket_from_summary(summary, status=item.status, customer_ref=owner.customer_ref)



# -- rules -------------------------------------------------------------------------


def _parse_cursor(cursor: str) -> PlusofonCursor:
    try:
        return PlusofonCursor.parse(cursor)
    except ValueError:
        raise Invalid(f"not a plusofon cursor: {cursor[:40]!r}", provider=PROVIDER) from None


def _advance(cursor: PlusofonCursor, candidate: _Candidate, status: TicketStatus,
             last_post: str) -> None:
    tid = candidate.ticket_id
    if candidate.summary is not None:
        mark = TicketMark.of(candidate.summary, last_post)
    else:
        assert candidate.mark is not None
        mark = TicketMark(candidate.mark.activity, candidate.mark.replies,
                          candidate.mark.status_id, candidate.mark.unread, last_post)
    if status is TicketStatus.CLOSED:
        cursor.open.pop(tid, None)
        cursor.closed[tid] = mark
    else:
        cursor.closed.pop(tid, None)
        cursor.open[tid] = mark


def _new_posts(full: TicketFull, candidate: _Candidate) -> list[Post]:
    """Posts after the last one reported, by post id."""
    posts, mark = full.posts, candidate.mark
    if mark is None:
        return list(posts)  # opened since the cursor started: all of it is new
    if mark.last_post:
        ids = [post.id for post in posts]
        if mark.last_post in ids:
            return list(posts[ids.index(mark.last_post) + 1:])
        return [post for post in posts if as_int(post.id) > as_int(mark.last_post)]
    # Open before the cursor started: the last post was never read. `replies`
    # counts the posts after the opening one (see the README's assumptions).
    replies = candidate.summary.replies if candidate.summary else full.post_count - 1
    grown = replies - mark.replies
    # The last `grown` posts as Plusofon sent them (a skipped unreadable one counts).
    return [post for post in posts if post.position >= full.post_count - grown] \
        if grown > 0 else []


def _without_head(post: Post, owner: Owner) -> str | None:
    """The opening post's text without the line naming the customer (the
    bot knows who wrote it); None: the text as it is."""
    if owner.head is None or post.id != owner.opening:
        return None
    first, _, rest = post.text.partition("\n")
    return rest.lstrip("\r\n") if first.strip() == owner.head.strip() else None
