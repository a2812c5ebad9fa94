"""buyers.anonymised_at for data-protection purges"""

import sqlalchemy as sa
from alembic import op

import dunning.db.types

revision, down_revision = "0006", "0005"


def upgrade() -> None:
    with op.batch_alter_table("buyers") as batch_op:
        batch_op.add_column(sa.Column("anonymised_at", dunning.db.types.UTCDateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("buyers") as batch_op:
        batch_op.drop_column("anonymised_at")
