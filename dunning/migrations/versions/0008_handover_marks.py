"""handover_marks: blocked cases are re-checked when their order changed, not every run;
sync_stamps: order writes per sync stamp, so marks need not count orders
"""

import sqlalchemy as sa
from alembic import op

import dunning.db.types

revision, down_revision = "0008", "0007"

UTC_TS = dunning.db.types.UTCDateTime(timezone=True)


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
    op.create_table(
        "sync_stamps",
        sa.Column("stamp", UTC_TS, nullable=False),
        sa.Column("writes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("stamp", name=op.f("pk_sync_stamps")),
    )


def downgrade() -> None:
    op.drop_table("sync_stamps")
    op.drop_table("handover_marks")
