"""buyers.anonymised_at for data-protection purges

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import dunning.db.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("buyers") as batch_op:
        batch_op.add_column(sa.Column("anonymised_at", dunning.db.types.UTCDateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("buyers") as batch_op:
        batch_op.drop_column("anonymised_at")
