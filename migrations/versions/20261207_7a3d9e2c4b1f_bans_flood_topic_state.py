"""bans, flood control, topic state

Revision ID: 7a3d9e2c4b1f
Revises: 5e1f0c2a9b7d
Create Date: 2026-12-07 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7a3d9e2c4b1f"
down_revision: str | None = "5e1f0c2a9b7d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bans",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tg_user_id", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("banned_by", sa.String(length=256), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("told_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bans")),
        sa.UniqueConstraint("tg_user_id", name=op.f("uq_bans_tg_user_id")),
    )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("slow_down_told_at", sa.DateTime(timezone=True),
                                      nullable=True))
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("merged_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("parts", sa.Integer(), server_default="1", nullable=False))
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tg_topic_status", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("tg_topic_closed", sa.Boolean(), server_default="0",
                                      nullable=False))
        batch_op.add_column(sa.Column("tg_card_pinned", sa.Boolean(), server_default="0",
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_column("tg_card_pinned")
        batch_op.drop_column("tg_topic_closed")
        batch_op.drop_column("tg_topic_status")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("parts")
        batch_op.drop_column("merged_until")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("slow_down_told_at")
    op.drop_table("bans")
