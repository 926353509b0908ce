"""initial schema

Revision ID: 281e9e4db9e4
Revises:
Create Date: 2026-11-22 18:40:49.467614
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "281e9e4db9e4"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tg_user_id", sa.BigInteger(), nullable=False),
        sa.Column("full_name", sa.String(length=256), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=True),
        sa.Column("remote_agent_id", sa.String(length=128), nullable=True),
        sa.Column("remote_login", sa.String(length=256), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
        sa.UniqueConstraint("tg_user_id", name=op.f("uq_agents_tg_user_id")),
    )
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agents_username"), ["username"], unique=False)

    op.create_table(
        "customers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tg_user_id", sa.BigInteger(), nullable=False),
        sa.Column("full_name", sa.String(length=256), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("email", sa.String(length=256), nullable=True),
        sa.Column("remote_customer_id", sa.String(length=128), nullable=True),
        sa.Column(
            "selected_ticket_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column("blocked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("tg_user_id", name=op.f("uq_customers_tg_user_id")),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("lane", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_outbox_idempotency_key")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_outbox_lane", ["lane", "status", "id"], unique=False)

    op.create_table(
        "poll_cursors",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider", name=op.f("pk_poll_cursors")),
    )
    op.create_table(
        "tickets",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("remote_ticket_id", sa.String(length=128), nullable=True),
        sa.Column("number", sa.String(length=64), nullable=True),
        sa.Column("remote_url", sa.String(length=512), nullable=True),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("subject", sa.String(length=256), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("department_id", sa.String(length=128), nullable=True),
        sa.Column(
            "assignee_agent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("assignee_name", sa.String(length=256), nullable=True),
        sa.Column("tg_topic_id", sa.BigInteger(), nullable=True),
        sa.Column("tg_card_message_id", sa.BigInteger(), nullable=True),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_reply_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["assignee_agent_id"], ["agents.id"], name=op.f("fk_tickets_assignee_agent_id_agents")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_tickets_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tickets")),
        sa.UniqueConstraint(
            "provider", "remote_ticket_id", name=op.f("uq_tickets_provider_remote_ticket_id")
        ),
    )
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tickets_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_tickets_status"), ["status"], unique=False)

    op.create_table(
        "messages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("ticket_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("author_kind", sa.String(length=16), nullable=False),
        sa.Column("author_name", sa.String(length=256), nullable=True),
        sa.Column("agent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("tg_media_group_id", sa.String(length=64), nullable=True),
        sa.Column("remote_message_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_messages_agent_id_agents")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_messages_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_messages_ticket_id_tickets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint(
            "ticket_id", "remote_message_id", name=op.f("uq_messages_ticket_id_remote_message_id")
        ),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_messages_media_group", ["customer_id", "tg_media_group_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_messages_ticket_id"), ["ticket_id"], unique=False)

    op.create_table(
        "attachments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("file_name", sa.String(length=256), nullable=False),
        sa.Column("mime_type", sa.String(length=128), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("tg_file_id", sa.String(length=256), nullable=True),
        sa.Column("remote_url", sa.Text(), nullable=True),
        sa.Column("remote_ref", sa.String(length=256), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_attachments_message_id_messages")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attachments")),
    )
    with op.batch_alter_table("attachments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_attachments_message_id"), ["message_id"], unique=False)

    op.create_table(
        "tg_links",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tg_chat_id", sa.BigInteger(), nullable=False),
        sa.Column("tg_message_id", sa.BigInteger(), nullable=False),
        sa.Column("ticket_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_tg_links_message_id_messages")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_tg_links_ticket_id_tickets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tg_links")),
        sa.UniqueConstraint(
            "tg_chat_id", "tg_message_id", name=op.f("uq_tg_links_tg_chat_id_tg_message_id")
        ),
    )
    with op.batch_alter_table("tg_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tg_links_message_id"), ["message_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_tg_links_ticket_id"), ["ticket_id"], unique=False)

    op.create_table(
        "local_agents",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("login", sa.String(length=255), nullable=False),
        sa.Column("full_name", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_local_agents")),
        sa.UniqueConstraint("login", name=op.f("uq_local_agents_login")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "local_kb_articles",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("title_folded", sa.Text(), nullable=False),
        sa.Column("text_folded", sa.Text(), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_local_kb_articles")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "local_tickets",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("customer_ref", sa.String(length=128), nullable=False),
        sa.Column("customer_name", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("assignee_ref", sa.String(length=128), nullable=True),
        sa.Column("assignee_name", sa.String(length=255), nullable=True),
        sa.Column("department_id", sa.String(length=64), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "priority IN ('low', 'normal', 'high', 'critical')",
            name=op.f("ck_local_tickets_priority"),
        ),
        sa.CheckConstraint(
            "status IN ('open', 'waiting', 'closed')", name=op.f("ck_local_tickets_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_local_tickets")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_local_tickets_idempotency_key")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "local_messages",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "ticket_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("author_kind", sa.String(length=16), nullable=False),
        sa.Column("author_ref", sa.String(length=128), nullable=True),
        sa.Column("author_name", sa.String(length=255), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("attachments", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "author_kind IN ('customer', 'agent', 'note', 'system')",
            name=op.f("ck_local_messages_author_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["local_tickets.id"],
            name=op.f("fk_local_messages_ticket_id_local_tickets"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_local_messages")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_local_messages_idempotency_key")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("local_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_local_messages_ticket_id"), ["ticket_id"], unique=False
        )

    op.create_table(
        "local_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "ticket_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column(
            "message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("origin_key", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('ticket_changed', 'message_added')", name=op.f("ck_local_events_kind")
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["local_messages.id"],
            name=op.f("fk_local_events_message_id_local_messages"),
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["local_tickets.id"],
            name=op.f("fk_local_events_ticket_id_local_tickets"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_local_events")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("local_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_local_events_ticket_id"), ["ticket_id"], unique=False)



def downgrade() -> None:
    with op.batch_alter_table("local_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_local_events_ticket_id"))

    op.drop_table("local_events")
    with op.batch_alter_table("local_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_local_messages_ticket_id"))

    op.drop_table("local_messages")
    op.drop_table("local_tickets")
    op.drop_table("local_kb_articles")
    op.drop_table("local_agents")
    with op.batch_alter_table("tg_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tg_links_ticket_id"))
        batch_op.drop_index(batch_op.f("ix_tg_links_message_id"))

    op.drop_table("tg_links")
    with op.batch_alter_table("attachments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attachments_message_id"))

    op.drop_table("attachments")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_ticket_id"))
        batch_op.drop_index("ix_messages_media_group")

    op.drop_table("messages")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tickets_status"))
        batch_op.drop_index(batch_op.f("ix_tickets_customer_id"))

    op.drop_table("tickets")
    op.drop_table("poll_cursors")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_lane")
        batch_op.drop_index("ix_outbox_due")

    op.drop_table("outbox")
    op.drop_table("customers")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agents_username"))

    op.drop_table("agents")
