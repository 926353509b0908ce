"""Polling Zenlix (`fetch_changes`).

`ticket_list` has no "since" filter and says nothing about comments
(providers/zenlix.md), so a cycle lists the open tickets (status, lock and
archive changes, new tickets), then reads the comments of the tickets due
by the adaptive schedule (cursor.py), within the call budget. Comments have
no ids: they are known by position and (author, dt, text); those the bridge
posted itself are recognised from its records and carry the idempotency key
they were posted with.

One ticket can make `ticket_list` unreadable (its text cut inside a
character, issue 14). Then no poll fails for it: every tracked ticket is
read on its own with `ticket_view` on its schedule, and the bridge's new
tickets are found by the "fresh" marks creation leaves (records.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from bridges.base import (
    AuthorKind,
    ChangeEvent,
    Changes,
    MessageAdded,
    RemoteMessage,
    TicketChanged,
)
from bridges.errors import NotFound
from bridges.zenlix.client import ListUnreadable, ZenlixClient
from bridges.zenlix.clock import Clock
from bridges.zenlix.config import ZenlixSettings
from bridges.zenlix.cursor import PollState, Schedule, TrackedTicket
from bridges.zenlix.mapping import (
    OPENING_POSITION,
    comment_fingerprint,
    detail_from_listed,
    detail_signature,
    listed_signature,
    message_id,
    normal_status,
    parse_server_time,
    server_time,
    text_fingerprint,
)
from bridges.zenlix.models import Comment, ListedTicket, TicketDetail
from bridges.zenlix.reader import ZenlixReader
from bridges.zenlix.records import LockNote, OriginNote, OwnComment, Pending, ZenlixRecords

log = logging.getLogger("deskbridge.zenlix")

# A follow-up cycle (after `more`) this soon reuses the last ticket lists.
RELIST_AFTER_SECONDS = 10.0
# The bot's key is echoed on the change its update made if the poll sees it
# within this long; later, the same state is someone else's doing.
ORIGIN_FOR_SECONDS = 3600.0
CLOSED_STATES = ("ok", "arch")


@dataclass
class Activity:
    """What the bridge did to tickets since the last poll."""

    # Tickets the bot acted on: read in the next cycle, at the busy pace.
    touched: set[str] = field(default_factory=set)
    # Tickets whose update Zenlix refused: reported as they are, changed or not.
    resync: set[str] = field(default_factory=set)


class _Cycle:
    """The call budget of one `fetch_changes`."""

    def __init__(self, client: ZenlixClient, budget: int) -> None:
        self._client = client
        self._start = client.requests
        self.budget = budget
        self.cut_short = False

    def affords(self, calls: int) -> bool:
        if self._client.requests - self._start + calls <= self.budget:
            return True
        self.cut_short = True
        return False


class Poller:
    def __init__(self, reader: ZenlixReader, records: ZenlixRecords, schedule: Schedule,
                 settings: ZenlixSettings, clock: Clock, activity: Activity) -> None:
        self._reader = reader
        self.records = records
        self.schedule = schedule
        self.settings = settings
        self._clock = clock
        self._activity = activity
        self._kept_cursor: tuple[str, PollState] | None = None
        self._lists_unreadable = False  # to warn once, not every cycle

    async def fetch_changes(self, cursor: str | None) -> Changes:
        if cursor is None:
            return await self.start()
        # The cursor just returned comes back at once after `more`: reuse it
        # parsed. Taken out first, so a cycle that fails is parsed afresh.
        kept, self._kept_cursor = self._kept_cursor, None
        state = kept[1] if kept is not None and kept[0] == cursor else PollState.loads(cursor)
        cycle = _Cycle(self._reader.client, self.settings.calls_per_cycle)
        if not state.more:
            # A follow-up round finishes the same cycle: the schedule counts
            # cycles (scheduled polls), not rounds.
            state.cycle += 1
        events: list[ChangeEvent] = []
        now = self._clock.time()
        if not (state.more and now - state.listed_at < RELIST_AFTER_SECONDS):
            await self._scan_lists(state, cycle, events)
            state.listed_at = now
        await self._read_comments(state, cycle, events)
        state.more = cycle.cut_short
        dumped = state.dumps()
        self._kept_cursor = (dumped, state)
        return Changes(events=events, cursor=dumped, more=cycle.cut_short)

    async def start(self) -> Changes:
        """A cursor from now: the tickets of ours open now, none of their history."""
        now = self._clock.time()
        state = PollState(cycle=0, since=server_time(now, self.settings.zone), listed_at=now,
                          more=False, tickets={})
        listed = await self._list_open()
        if listed is None:
            # Nothing to start from but the tickets still marked fresh: they
            # are adopted, history and all, by the first cycle.
            return Changes(events=(), cursor=state.dumps())
        ours = await self._reader.ours(list(listed))
        for ticket_hash in ours:
            state.tickets[ticket_hash] = self.schedule.found(
                ticket_hash, 0, listed_signature(listed[ticket_hash]))
        await self.records.forget_fresh(ours)
        return Changes(events=(), cursor=state.dumps())

    async def _list_open(self) -> dict[str, ListedTicket] | None:
        """The open tickets, or None when Zenlix cannot send its list."""
        try:
            listed = await self._reader.list_open()
        except ListUnreadable as exc:
            if not self._lists_unreadable:
                log.warning("%s; reading the bridged tickets one by one until it can", exc)
            self._lists_unreadable = True
            return None
        if self._lists_unreadable:
            log.warning("Zenlix's ticket list can be read again")
        self._lists_unreadable = False
        return listed

    async def _scan_lists(self, state: PollState, cycle: _Cycle,
                          events: list[ChangeEvent]) -> None:
        """Status, lock and archive changes, and tickets new since the last cycle."""
        listed = await self._list_open()
        if listed is None:
            await self._scan_without_lists(state, cycle, events)
            return
        new = await self._reader.ours([h for h in listed if h not in state.tickets])
        adopted = []
        for ticket_hash in sorted(new, key=lambda h: listed[h].id_ticket):
            if not cycle.affords(2):
                break
            detail = await self._reader.view(ticket_hash)
            await self._adopt(state, detail, listed_signature(listed[ticket_hash]), events)
            adopted.append(ticket_hash)
        await self.records.forget_fresh(adopted)
        changed = []
        vanished = []
        for ticket_hash, tracked in state.tickets.items():
            row = listed.get(ticket_hash)
            if row is None:
                if not tracked.hidden:
                    vanished.append(ticket_hash)
                continue
            tracked.hidden = False
            if listed_signature(row) != tracked.signature or ticket_hash in self._activity.resync:
                changed.append(ticket_hash)
        if not changed and not vanished:
            return
        touched = [*changed, *vanished]
        notes = await self.records.lock_notes(touched)
        origins = await self.records.origins(touched)
        for ticket_hash in changed:
            row = listed[ticket_hash]
            if normal_status(row.status) == "free":
                detail = detail_from_listed(row)
            elif cycle.affords(1):
                detail = await self._reader.view(ticket_hash)
            else:
                continue  # seen again next cycle
            self._activity.resync.discard(ticket_hash)
            await self._report(state, detail, listed_signature(row), notes, origins, events)
        if vanished and cycle.affords(1):
            archived = await self._reader.ticket_list("arch")
            for ticket_hash in vanished:
                tracked = state.tickets[ticket_hash]
                row = archived.get(ticket_hash)
                if row is None:
                    # Out of the service account's lists (e.g. referred away):
                    # read with ticket_view on its schedule.
                    tracked.hidden = True
                    self.schedule.wake(tracked, state.cycle)
                    continue
                if not tracked.signature.startswith("ok|"):
                    # Archived straight from open: report it closed. (A done
                    # ticket's archiving changes nothing the bot shows.)
                    detail = await self._reader.view(ticket_hash) if cycle.affords(1) else \
                        detail_from_listed(row)
                    await self._report(state, detail, listed_signature(row), notes, origins,
                                       events)
                del state.tickets[ticket_hash]  # archived tickets take no comments

        for ticket_hash in [h for h in changed if h in state.tickets]:
            self.schedule.wake(state.tickets[ticket_hash], state.cycle)

    async def _report(self, state: PollState, detail: TicketDetail, signature: str,
                      notes: dict[str, LockNote], origins: dict[str, OriginNote],
                      events: list[ChangeEvent]) -> None:
        """A `TicketChanged` for a tracked ticket, with the bot's own
        idempotency key when this state is what its last change produced."""
        ticket_hash = detail.ticket_hash or ""
        tracked = state.tickets[ticket_hash]
        origin = origins.get(ticket_hash)
        origin_key = None
        if (origin is not None and origin.signature == signature
                and origin.key != tracked.origin
                and self._clock.time() - origin.at < ORIGIN_FOR_SECONDS):
            origin_key = tracked.origin = origin.key
        tracked.signature = signature
        remote = await self._reader.remote(detail, self._reader.known.get(ticket_hash), notes)
        events.append(TicketChanged(remote, origin_key=origin_key))

    async def _scan_without_lists(self, state: PollState, cycle: _Cycle,
                                  events: list[ChangeEvent]) -> None:
        """No list: every tracked ticket is read with ticket_view on its
        comment schedule (as a hidden one), and the bridge's new tickets are
        found by their fresh marks."""
        for tracked in state.tickets.values():
            tracked.hidden = True
        fresh = await self.records.fresh()
        known = [h for h in fresh if h in state.tickets]
        ours = await self._reader.ours([h for h in fresh if h not in state.tickets])
        for ticket_hash in [h for h in fresh if h in ours]:
            if not cycle.affords(2):
                break
            try:
                detail = await self._reader.view(ticket_hash)
            except NotFound:  # deleted by an admin before it was tracked
                known.append(ticket_hash)
                continue
            await self._adopt(state, detail, detail_signature(detail), events)
            state.tickets[ticket_hash].hidden = True
            known.append(ticket_hash)
        await self.records.forget_fresh(known)

    async def _adopt(self, state: PollState, detail: TicketDetail, signature: str,
                     events: list[ChangeEvent]) -> None:
        """A ticket of ours seen for the first time: its state and its text
        (the customer's first message), then its comments this same cycle."""
        ticket_hash = detail.ticket_hash or ""
        record = self._reader.known[ticket_hash]
        remote = await self._reader.remote(detail, record)
        events.append(TicketChanged(remote, origin_key=record.key))
        events.append(MessageAdded(RemoteMessage(
            remote_message_id=message_id(ticket_hash, OPENING_POSITION),
            remote_ticket_id=ticket_hash, author_kind=AuthorKind.CUSTOMER,
            text=detail.text[record.strip:], author_remote_id=detail.client_id,
            created_at=parse_server_time(detail.date_created, self.settings.zone),
            origin_key=record.key)))
        state.tickets[ticket_hash] = TrackedTicket(
            seen=0, fingerprint="", due=state.cycle, level=0,
            signature=signature, origin=record.key or "")

    async def _read_comments(self, state: PollState, cycle: _Cycle,
                             events: list[ChangeEvent]) -> None:
        touched = self._activity.touched
        due = [h for h, t in state.tickets.items() if t.due <= state.cycle or h in touched]
        due.sort(key=lambda h: (h not in touched, state.tickets[h].due, h))
        read: list[tuple[str, list[Comment]]] = []
        # The bot's own activity (a customer's message, a take) is when an
        # answer is likeliest: such tickets are read at the busy pace again.
        woken: set[str] = set()
        for ticket_hash in due:
            tracked = state.tickets[ticket_hash]
            if not cycle.affords(2 if tracked.hidden else 1):
                break
            if tracked.hidden and not await self._reread_hidden(state, ticket_hash, events):
                continue
            read.append((ticket_hash, await self._reader.comments(ticket_hash)))
            if ticket_hash in self._activity.touched:
                self._activity.touched.discard(ticket_hash)
                woken.add(ticket_hash)
        if not read:
            return
        news = {h: _first_new(state.tickets[h], comments, state.since) for h, comments in read}
        busy = [h for h, comments in read if news[h] < len(comments)]
        own = await self.records.own_comments(busy)
        posting = await self.records.posting(busy)
        for ticket_hash, comments in read:
            tracked = state.tickets[ticket_hash]
            start = news[ticket_hash]
            messages = await self._messages(ticket_hash, comments, start,
                                             own.get(ticket_hash, {}), posting.get(ticket_hash))
            events.extend(MessageAdded(message) for message in messages)
            tracked.seen = len(comments)
            tracked.fingerprint = comment_fingerprint(comments[-1]) if comments else ""
            active = ticket_hash in woken or any(m.origin_key is None for m in messages)
            closed = tracked.signature.split("|", 1)[0] in CLOSED_STATES
            self.schedule.after_check(tracked, state.cycle, active=active, closed=closed)

    async def _reread_hidden(self, state: PollState, ticket_hash: str,
                             events: list[ChangeEvent]) -> bool:
        """A ticket out of the lists: read it directly. False when it is gone."""
        tracked = state.tickets[ticket_hash]
        try:
            detail = await self._reader.view(ticket_hash)
        except NotFound:
            del state.tickets[ticket_hash]
            return False
        signature = detail_signature(detail)
        archived = normal_status(detail.status) == "arch"
        # A done ticket's archiving changes nothing the bot shows.
        quiet = archived and tracked.signature.startswith("ok|")
        if (signature != tracked.signature and not quiet) or ticket_hash in self._activity.resync:
            self._activity.resync.discard(ticket_hash)
            notes = await self.records.lock_notes([ticket_hash])
            origins = await self.records.origins([ticket_hash])
            await self._report(state, detail, signature, notes, origins, events)
        if archived:
            del state.tickets[ticket_hash]  # archived tickets take no comments
            return False
        return True

    async def _messages(self, ticket_hash: str, comments: list[Comment], start: int,
                        own: dict[int, OwnComment], posting: Pending | None
                        ) -> list[RemoteMessage]:
        """Comments from index `start` on as messages: the bridge's own (a
        message split over several comments is one) with the key it was
        posted with; a post under way is left out; the rest are people's."""
        record = self._reader.known.get(ticket_hash)
        client = record.client if record is not None else None
        messages = []
        for index in range(start, len(comments)):
            position = index + 1
            comment = comments[index]
            mine = own.get(position)
            if mine is not None:
                if mine.first == position:
                    messages.append(self._own_message(ticket_hash, comments, own, mine))
                continue
            if _being_posted(comment, position, posting):
                continue
            kind = AuthorKind.CUSTOMER if comment.author and comment.author == client \
                else AuthorKind.AGENT
            name = comment.usr_fio or (await self._reader.user_name(comment.author)
                                       if comment.author else None)
            messages.append(RemoteMessage(
                remote_message_id=message_id(ticket_hash, position),
                remote_ticket_id=ticket_hash, author_kind=kind, text=comment.text,
                author_name=name, author_remote_id=comment.author,
                created_at=parse_server_time(comment.dt, self.settings.zone)))
        return messages

    def _own_message(self, ticket_hash: str, comments: list[Comment],
                     own: dict[int, OwnComment], mine: OwnComment) -> RemoteMessage:
        parts = [comments[position - 1].text[piece.strip:]
                 for position, piece in sorted(own.items())
                 if piece.first == mine.first and position <= len(comments)]
        first = comments[mine.first - 1]
        return RemoteMessage(
            remote_message_id=message_id(ticket_hash, mine.first), remote_ticket_id=ticket_hash,
            author_kind=AuthorKind(mine.kind), text="".join(parts),
            author_name=first.usr_fio or None, author_remote_id=first.author,
            created_at=parse_server_time(first.dt, self.settings.zone), origin_key=mine.key)


def _first_new(tracked: TrackedTicket, comments: list[Comment], since: str) -> int:
    """Index of the first comment not delivered yet."""
    if tracked.seen < 0:
        # Found when the cursor started: what is newer than that is new.
        return next((i for i, c in enumerate(comments) if c.dt >= since), len(comments))
    if tracked.seen == 0:
        return 0
    seen = tracked.seen
    if seen <= len(comments) and comment_fingerprint(comments[seen - 1]) == tracked.fingerprint:
        return seen
    # Comments are append-only; if the list still changed (an admin deleted
    # one), find the last delivered comment again by (author, dt, text).
    for index in range(len(comments) - 1, -1, -1):
        if comment_fingerprint(comments[index]) == tracked.fingerprint:
            return index + 1
    log.warning("the comments of a Zenlix ticket changed beyond recognition; "
                "delivering only what comes next")
    return len(comments)


def _being_posted(comment: Comment, position: int, posting: Pending | None) -> bool:
    """A comment of a post still under way (or abandoned half-way): never
    delivered as someone else's."""
    if posting is None or position <= posting.comments_before:
        return False
    if posting.author is not None and comment.author != posting.author:
        return False
    return text_fingerprint(comment.text) in posting.chunks
