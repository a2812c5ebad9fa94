"""handover_marks: blocked cases are re-checked when their order changed, not every run

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import dunning.models.types

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TS = dunning.models.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "handover_marks",
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("synced_mark", UTC_TS, nullable=True),
        sa.Column("synced_count", sa.Integer(), nullable=True),
        sa.Column("full_as_of", UTC_TS, nullable=False),
        sa.Column("updated_at", UTC_TS, nullable=False),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_handover_marks")),
    )


def downgrade() -> None:
    op.drop_table("handover_marks")
