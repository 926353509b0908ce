"""iqstore payloads ⇄ the normalised types of `bridges.base`, and the ids the
bridge makes up.

A "ticket" of this bridge is a *conversation*: the part of a client's chat in
the channel that starts with the message opening it. Its id is
`<client id>:<opening message id>`; a client's later messages belong to its
newest conversation (README: iqstore assumptions).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from bridges.base import Attachment, AuthorKind, RemoteMessage
from bridges.errors import NotFound
from bridges.iqstore.client import PROVIDER
from bridges.iqstore.models import ChatMessage, Rels

# Our LocalIds live at and above 2**51: the web and mobile clients use the
# current time in milliseconds (about 2**40), so a LocalId up here is ours,
# and below 2**53 it survives JavaScript clients too.
LOCAL_ID_FLOOR = 1 << 51
_LOCAL_ID_BITS = LOCAL_ID_FLOOR - 1
_AUTHORS = {"client": AuthorKind.CUSTOMER, "user": AuthorKind.AGENT}


def segment_id(client_id: int, opening_id: int) -> str:
    return f"{client_id}:{opening_id}"


def parse_segment_id(remote_ticket_id: str) -> tuple[int, int]:
    client, _, opening = remote_ticket_id.strip().partition(":")
    if not (client.isascii() and client.isdigit() and opening.isascii() and opening.isdigit()
            and len(client) <= 18 and len(opening) <= 18):
        raise NotFound(f"not an iqstore conversation id: {remote_ticket_id!r}",
                       provider=PROVIDER)
    return int(client), int(opening)


def local_id_for(key: str | None, part: int) -> int:
    """The LocalId of part `part` of the call with idempotency key `key`: the
    same on every retry, so the retry is recognised (random without a key)."""
    if key is None:
        return LOCAL_ID_FLOOR | secrets.randbits(51)
    digest = hashlib.sha256(f"{key}\x00{part}".encode()).digest()
    return LOCAL_ID_FLOOR | (int.from_bytes(digest[:8], "big") & _LOCAL_ID_BITS)


def is_ours(local_id: int | None) -> bool:
    return local_id is not None and local_id >= LOCAL_ID_FLOOR


def ms_time(milliseconds: int) -> datetime | None:
    return datetime.fromtimestamp(milliseconds / 1000, UTC) if milliseconds > 0 else None


def is_visible(message: ChatMessage) -> bool:
    """Notices without text (e.g. "an agent joined") carry nothing to show."""
    return bool((message.text or "").strip() or message.file_id)


def message_from_chat(
    message: ChatMessage, conversation: str, rels: Rels, *, origin_key: str | None
) -> RemoteMessage:
    return RemoteMessage(
        remote_message_id=str(message.id),
        remote_ticket_id=conversation,
        author_kind=_AUTHORS.get(message.author, AuthorKind.SYSTEM),
        text=message.text or "",
        author_name=_author_name(message, rels),
        author_remote_id=_author_id(message),
        attachments=_attachments(message, rels),
        created_at=ms_time(message.created_at),
        origin_key=origin_key,
    )


def _author_id(message: ChatMessage) -> str | None:
    if message.author == "user" and message.user_id is not None:
        return f"user:{message.user_id}"
    if message.author == "client" and message.client_id is not None:
        return f"client:{message.client_id}"
    return None


def _author_name(message: ChatMessage, rels: Rels) -> str | None:
    if message.author == "user":
        user = next((u for u in rels.users if u.id == message.user_id), None)
        return (user.display_name or user.name or None) if user else None
    if message.author == "client":
        client = next((c for c in rels.clients if c.id == message.client_id), None)
        return (client.name or None) if client else None
    return None


def _attachments(message: ChatMessage, rels: Rels) -> tuple[Attachment, ...]:
    if not message.file_id:
        return ()
    file = next((f for f in rels.files if f.id == message.file_id), None)
    name = (file.name if file else None) or message.file_id
    mime = (file.content_type if file else None) or None
    is_image = (file is not None and file.type == "image") or bool(mime and
                                                                      mime.startswith("image/"))
    # No download address: the seeds name none (README: iqstore assumptions).
    return (Attachment(file_name=name, mime_type=mime, size=file.size if file else None,
                       kind="photo" if is_image else "document", ref=message.file_id),)
