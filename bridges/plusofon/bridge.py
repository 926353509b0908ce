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
from dataclasses import dataclass

from bridges.base import (
    Attachment,
    AuthorKind,
    BridgeBase,
    Capabilities,
    Capability,
    Changes,
    CheckReport,
    CustomerIdentity,
    NewTicket,
    RemoteMessage,
    RemoteTicket,
)
from bridges.content import checked_files, subject_of
from bridges.errors import BridgeError, Invalid, NotFound
from bridges.plusofon.client import PROVIDER, PlusofonClient
from bridges.plusofon.config import PlusofonSettings
from bridges.plusofon.mapping import (
    customer_head,
    files_placeholder,
    local_time,
    requester_id,
    ticket_from_full,
)
from bridges.plusofon.models import Post, TicketFull
from bridges.plusofon.poll import Poller
from bridges.plusofon.records import as_int, owner_of
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
        self._poller = Poller(client, state, settings, clock=clock)

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
        # Every Telegram customer writes through the one company account: the
        # ticket says who is asking, so that Plusofon's support can tell.
        head = customer_head(ticket.customer)
        body = ticket.text if ticket.text.strip() else files_placeholder(files)
        description = f"{head}\n\n{body}"
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
            owner = json.dumps({"customer": ticket.customer.customer_ref, "key": key,
                                "head": head, "opening": full.posts[0].id},
                               ensure_ascii=False)
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
        owner = owner_of(await self._state.get(f"ticket:{full.id}"))
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
        return await self._poller.fetch_changes(cursor)

    async def aclose(self) -> None:
        await self._client.aclose()

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
        newest = max(free, key=lambda t: (t.creationtime, as_int(t.ticket_id)))
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


def _normalise(text: str) -> str:
    return " ".join(text.split())
