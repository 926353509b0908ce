"""Plusofon: the bridge talks to Plusofon's support as the company's customer
account (providers/plusofon.md).

Telegram customers reach Plusofon's support through the bot: each of their
requests is a ticket of the one account; support's answers come back to them
and to the ticket's topic. The API has no agent side, so the agent chat only
mirrors: no agent replies, notes, assignment, priority or closing.

State beyond the poll cursor lives in `BridgeState`:
- `ticket:<id>`: the Telegram customer a ticket belongs to and the
  idempotency key that created it;
- `own:<post id>`: a post the bridge wrote, with the key of that call (the
  poll hands it back as `origin_key`, so the bot never delivers its own posts);
- `key:<idempotency key>`: how far a create or answer got (ticket, post,
  files uploaded), or since when it is pending, so that a retry neither
  writes twice nor loses a file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bridges.base import (
    Attachment,
    AuthorKind,
    BridgeBase,
    Capabilities,
    Capability,
    ChangeEvent,
    Changes,
    CheckReport,
    CustomerIdentity,
    MessageAdded,
    NewTicket,
    RemoteMessage,
    RemoteTicket,
    TicketChanged,
    TicketStatus,
)
from bridges.content import checked_files, subject_of
from bridges.errors import BridgeError, Invalid, NotFound
from bridges.plusofon.client import PROVIDER, PlusofonClient
from bridges.plusofon.config import PlusofonSettings
from bridges.plusofon.cursor import PlusofonCursor, TicketMark
from bridges.plusofon.mapping import (
    files_placeholder,
    local_time,
    message_from_post,
    requester_id,
    status_of,
    ticket_from_full,
    ticket_from_summary,
)
from bridges.plusofon.models import Post, TicketFull, TicketSummary
from bridges.registry import BridgeDeps, register
from bridges.state import BridgeState

# A create or answer that was cut off may still have reached Plusofon; a
# retry looks for what it wrote this long before the first attempt began.
ADOPT_SLACK_SECONDS = 120


@dataclass(frozen=True, slots=True)
class _Progress:
    """How far a call with an idempotency key got (`key:<key>`)."""

    ticket_id: str | None = None
    post_id: str | None = None
    files_done: int = 0
    pending_since: float | None = None

    def to_json(self) -> str:
        if self.post_id is None:
            return json.dumps({"pending": self.pending_since})
        return json.dumps({"ticket": self.ticket_id, "post": self.post_id,
                           "files": self.files_done})

    @classmethod
    def from_json(cls, text: str | None) -> _Progress:
        data = json.loads(text) if text else {}
        if "post" in data:
            return cls(data["ticket"], data["post"], int(data.get("files", 0)))
        return cls(pending_since=data.get("pending"))


@dataclass(frozen=True, slots=True)
class _Owner:
    customer_ref: str | None = None
    create_key: str | None = None


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


class PlusofonBridge(BridgeBase):
    name = PROVIDER
    # Customer side only: see the module docstring.
    capabilities: Capabilities = frozenset(
        {Capability.CREATE, Capability.REPLY_AS_CUSTOMER, Capability.ATTACHMENTS}
    )
    # Files travel as base64 (`api/v1/ticket/attachment`): the bytes are needed.
    uploads_files: bool = True

    def __init__(
        self,
        client: PlusofonClient,
        state: BridgeState,
        settings: PlusofonSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._state = state
        self._settings = settings
        self._clock = clock

    # -- contract ---------------------------------------------------------------

    async def check(self) -> CheckReport:
        lines = []
        try:
            if self._settings.token is None:
                await self._client.sign_in()
                lines.append(f"plusofon: signed in as {self._settings.email}")
            tickets = await self._client.list_tickets(open_tickets=True)
        except BridgeError as exc:
            return CheckReport(ok=False, lines=[f"plusofon: {type(exc).__name__}: {exc}"])
        lines += [
            f"plusofon: {self._settings.base_url} answers; {len(tickets)} open ticket(s)",
            "plusofon: customer-side API: agent replies, notes, assignment, priority "
            "and closing are not available",
        ]
        return CheckReport(ok=True, lines=lines)

    async def create_ticket(self, ticket: NewTicket) -> RemoteTicket:
        files = checked_files(ticket.text, ticket.attachments, provider=PROVIDER,
                              needs_bytes=True)
        subject = subject_of(ticket.subject, ticket.text)
        description = ticket.text if ticket.text.strip() else files_placeholder(files)
        key = ticket.idempotency_key
        progress = await self._progress(key)
        full: TicketFull | None = None
        if progress.ticket_id is None:
            if progress.pending_since is not None:
                full = await self._adopt_ticket(subject, progress.pending_since)
            if full is None:
                await self._mark_pending(key)
                full = await self._client.create_ticket(subject, description)
            if not full.posts:
                raise Invalid(f"ticket {full.id} was created without its post", provider=PROVIDER)
            progress = _Progress(full.id, full.posts[0].id)
            owner = json.dumps({"customer": ticket.customer.customer_ref, "key": key})
            await self._state.set_many({
                f"ticket:{full.id}": owner,
                f"own:{full.posts[0].id}": key or "",
                **({f"key:{key}": progress.to_json()} if key else {}),
            })
        await self._upload(progress, files, key)
        if full is None:
            full = await self._client.get_ticket(_ticket_id(progress.ticket_id))
        return ticket_from_full(full, customer_ref=ticket.customer.customer_ref)

    async def get_ticket(self, remote_ticket_id: str) -> RemoteTicket:
        full = await self._client.get_ticket(_ticket_id(remote_ticket_id))
        owner = _owner(await self._state.get(f"ticket:{full.id}"))
        return ticket_from_full(full, customer_ref=owner.customer_ref)

    async def post_customer_message(
        self,
        remote_ticket_id: str,
        customer: CustomerIdentity,
        text: str,
        attachments: Sequence[Attachment] = (),
        idempotency_key: str | None = None,
    ) -> RemoteMessage:
        files = checked_files(text, attachments, provider=PROVIDER, needs_bytes=True)
        ticket_id = _ticket_id(remote_ticket_id)
        sent_text = text if text.strip() else files_placeholder(files)
        key = idempotency_key
        progress = await self._progress(key)
        if progress.post_id is None:
            post = None
            if progress.pending_since is not None:
                post = await self._adopt_post(ticket_id, sent_text, progress.pending_since)
            if post is None:
                await self._mark_pending(key)
                post = _written_post(await self._client.answer(ticket_id, sent_text), sent_text)
            progress = _Progress(ticket_id, post.id)
            await self._state.set_many({
                f"own:{post.id}": key or "",
                **({f"key:{key}": progress.to_json()} if key else {}),
            })
        await self._upload(progress, files, key)
        assert progress.post_id is not None
        return RemoteMessage(
            remote_message_id=progress.post_id,
            remote_ticket_id=ticket_id,
            author_kind=AuthorKind.CUSTOMER,
            text=text,
            author_name=customer.full_name,
            attachments=tuple(files),
            origin_key=key,
        )

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
        candidates.sort(key=lambda c: (c.activity, _as_int(c.ticket_id)))
        following = PlusofonCursor(open=dict(known.open), closed=dict(known.closed))
        seen, more = await self._read(candidates, following)
        events = await self._events(seen)
        return Changes(events=events, cursor=following.dump(now), more=more)

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- polling ------------------------------------------------------------------

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
            owner = _owner(owners.get(f"ticket:{tid}"))
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
                    post, tid, by_customer=by_customer, origin_key=key or None)))
            if change is not None and item.status is TicketStatus.CLOSED:
                events.append(change)  # after the closing answer
        return events

    @staticmethod
    def _remote_ticket(item: _Seen, owner: _Owner) -> RemoteTicket:
        summary = item.candidate.summary
        if item.full is not None:
            return ticket_from_full(item.full, customer_ref=owner.customer_ref, summary=summary)
        assert summary is not None
        return ticket_from_summary(summary, status=item.status, customer_ref=owner.customer_ref)

    # -- idempotency -----------------------------------------------------------------

    async def _progress(self, key: str | None) -> _Progress:
        if key is None:
            return _Progress()
        return _Progress.from_json(await self._state.get(f"key:{key}"))

    async def _mark_pending(self, key: str | None) -> None:
        if key is not None:
            await self._state.set(f"key:{key}", _Progress(pending_since=self._clock()).to_json())

    async def _upload(self, progress: _Progress, files: list[Attachment], key: str | None) -> None:
        """Upload the files not yet uploaded, recording each, so that a retry
        after a failure part-way sends only the rest."""
        assert progress.ticket_id is not None and progress.post_id is not None
        for index, file in enumerate(files):
            if index < progress.files_done:
                continue
            assert file.data is not None
            await self._client.attach(progress.ticket_id, progress.post_id, file.file_name,
                                      file.data)
            progress = _Progress(progress.ticket_id, progress.post_id, index + 1)
            if key is not None:
                await self._state.set(f"key:{key}", progress.to_json())

    async def _adopt_ticket(self, subject: str, since: float) -> TicketFull | None:
        """A create that was cut off may have worked: take a ticket with our
        subject, opened since then and claimed by no call."""
        listed = await self._client.list_tickets(open_tickets=True)
        fresh = [t for t in listed if t.subject.strip() == subject.strip()
                 and t.creationtime >= since - ADOPT_SLACK_SECONDS]
        claimed = await self._state.get_many(f"ticket:{t.ticket_id}" for t in fresh)
        free = [t for t in fresh if f"ticket:{t.ticket_id}" not in claimed]
        if not free:
            return None
        newest = max(free, key=lambda t: (t.creationtime, _as_int(t.ticket_id)))
        return await self._client.get_ticket(newest.ticket_id)

    async def _adopt_post(self, ticket_id: str, text: str, since: float) -> Post | None:
        """An answer that was cut off may have worked: take the newest post of
        the account with our text that no call claimed."""
        full = await self._client.get_ticket(ticket_id)
        author = requester_id(full)
        matching = [p for p in full.posts
                    if p.author.id == author and _normalise(p.text) == _normalise(text)
                    and _written_since(p, since - ADOPT_SLACK_SECONDS)]
        claimed = await self._state.get_many(f"own:{p.id}" for p in matching)
        free = [p for p in matching if f"own:{p.id}" not in claimed]
        return free[-1] if free else None


@register(PROVIDER)
async def create_plusofon_bridge(deps: BridgeDeps) -> PlusofonBridge:
    settings = PlusofonSettings.from_env(deps.env)
    client = PlusofonClient(settings, transport=deps.transport)
    return PlusofonBridge(client, BridgeState(deps.engine, PROVIDER), settings)


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
        return [post for post in posts if _as_int(post.id) > _as_int(mark.last_post)]
    # Open before the cursor started: the last post was never read. `replies`
    # counts the posts after the opening one (see the README's assumptions).
    replies = candidate.summary.replies if candidate.summary else len(posts) - 1
    grown = replies - mark.replies
    return list(posts[max(0, len(posts) - grown):]) if grown > 0 else []


def _written_post(full: TicketFull, text: str) -> Post:
    """Our post in the ticket `answer` returned: the newest with our text."""
    wanted = _normalise(text)
    for post in reversed(full.posts):
        if _normalise(post.text) == wanted:
            return post
    if not full.posts:
        raise Invalid(f"ticket {full.id}: the answer returned no posts", provider=PROVIDER)
    return full.posts[-1]


def _written_since(post: Post, since: float) -> bool:
    moment = local_time(post.date)
    return moment is None or moment.timestamp() >= since


def _ticket_id(remote_ticket_id: str | None) -> str:
    value = (remote_ticket_id or "").strip()
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        raise NotFound(f"not a Plusofon ticket id: {remote_ticket_id!r}", provider=PROVIDER)
    return value


def _owner(value: str | None) -> _Owner:
    if not value:
        return _Owner()
    data = json.loads(value)
    return _Owner(customer_ref=data.get("customer"), create_key=data.get("key"))


def _as_int(value: str) -> int:
    return int(value) if value.isdigit() else 0


def _normalise(text: str) -> str:
    return " ".join(text.split())
