"""agent toolkit: canned replies, ratings with comments, SLA deadlines, edits

Revision ID: 162fe1ba94a3
Revises: cdbb65d8b955
Create Date: 2026-11-22 19:40:53.113235
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "162fe1ba94a3"
down_revision: str | None = "cdbb65d8b955"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "canned_replies",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("title", sa.String(length=128), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("remote_article_id", sa.String(length=128), nullable=True),
        sa.Column(
            "created_by_agent_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column("use_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_agent_id"],
            ["agents.id"],
            name=op.f("fk_canned_replies_created_by_agent_id_agents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_canned_replies")),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("edited_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("rating_comment", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("awaiting_agent_since", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("reply_due_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("reply_reminded_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("autoclose_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_tickets_autoclose_at"), ["autoclose_at"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_tickets_reply_due_at"), ["reply_due_at"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tickets_reply_due_at"))
        batch_op.drop_index(batch_op.f("ix_tickets_autoclose_at"))
        batch_op.drop_column("autoclose_at")
        batch_op.drop_column("reply_reminded_at")
        batch_op.drop_column("reply_due_at")
        batch_op.drop_column("awaiting_agent_since")
        batch_op.drop_column("rating_comment")
        batch_op.drop_column("rated_at")

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("edited_at")

    op.drop_table("canned_replies")
