"""escalation tables and columns"""

import sqlalchemy as sa
from alembic import op

import dunning.db.types

revision, down_revision = "0004", "0003"


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(
            sa.Column("reminder_fees", sa.Numeric(14, 2), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("partner_told_paid", sa.Numeric(14, 2), nullable=False, server_default="0")
        )
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("lease_until", dunning.db.types.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("lease_until")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("partner_told_paid")
        batch.drop_column("reminder_fees")
