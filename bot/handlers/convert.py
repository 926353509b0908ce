"""aiogram Message → the services' IncomingMessage."""

from __future__ import annotations

from aiogram.types import Message

from bot.services.types import IncomingFile, IncomingMessage, TgUser

SUPPORTED_MEDIA = ("photo", "document", "voice", "video", "audio", "animation", "video_note")


def tg_user(message_or_user: object) -> TgUser:
    user = getattr(message_or_user, "from_user", message_or_user)
    assert user is not None
    return TgUser(
        tg_user_id=user.id,  # type: ignore[attr-defined]
        full_name=user.full_name,  # type: ignore[attr-defined]
        username=user.username,  # type: ignore[attr-defined]
        language_code=user.language_code,  # type: ignore[attr-defined]
    )


def is_supported(message: Message) -> bool:
    return bool(message.text) or any(getattr(message, kind) for kind in SUPPORTED_MEDIA)


def files_of(message: Message) -> list[IncomingFile]:
    if message.photo:
        largest = message.photo[-1]
        return [IncomingFile("photo", largest.file_id, f"photo_{message.message_id}.jpg",
                             "image/jpeg", largest.file_size)]
    for kind, default_name in (("document", "file"), ("video", "video.mp4"),
                               ("audio", "audio.mp3"), ("animation", "animation.mp4")):
        media = getattr(message, kind)
        if media is not None:
            return [IncomingFile(kind, media.file_id, media.file_name or default_name,
                                 media.mime_type, media.file_size)]
    if message.voice:
        return [IncomingFile("voice", message.voice.file_id, "voice.ogg",
                             message.voice.mime_type or "audio/ogg", message.voice.file_size)]
    if message.video_note:
        return [IncomingFile("video", message.video_note.file_id, "video_note.mp4",
                             "video/mp4", message.video_note.file_size)]
    return []


def incoming(message: Message, *, text: str | None = None, html: str | None = None
             ) -> IncomingMessage:
    plain = text if text is not None else (message.text or message.caption or "")
    if html is None and (message.text or message.caption):
        html = message.html_text if text is None else None
    reply = message.reply_to_message
    # In a forum, a plain message "replies" to the topic's creation message.
    reply_to = None
    reply_to_bot_text = None
    if reply is not None and not (reply.forum_topic_created is not None):
        reply_to = reply.message_id
        if reply.from_user is not None and reply.from_user.is_bot:
            reply_to_bot_text = reply.text or reply.caption
    return IncomingMessage(
        tg_chat_id=message.chat.id,
        tg_message_id=message.message_id,
        sender=tg_user(message),
        text=plain,
        html=html,
        files=files_of(message),
        tg_media_group_id=message.media_group_id,
        reply_to_tg_message_id=reply_to,
        reply_to_bot_text=reply_to_bot_text,
        tg_thread_id=message.message_thread_id if message.is_topic_message else None,
    )
