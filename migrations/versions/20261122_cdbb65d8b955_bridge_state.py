"""bridge state

Revision ID: cdbb65d8b955
Revises: 281e9e4db9e4
Create Date: 2026-11-22 19:08:32.583198
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "cdbb65d8b955"
down_revision: str | None = "281e9e4db9e4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bridge_state",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider", "key", name=op.f("pk_bridge_state")),
    )


def downgrade() -> None:
    op.drop_table("bridge_state")
