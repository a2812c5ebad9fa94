"""buyers.buyer_type: consumer or business (contract `buyer.type`); existing rows: consumer"""

import sqlalchemy as sa
from alembic import op

revision, down_revision = "0009", "0008"


def upgrade() -> None:
    # The server default fills the existing rows: the contract's default is consumer.
    with op.batch_alter_table("buyers") as batch_op:
        batch_op.add_column(
            sa.Column("buyer_type", sa.String(length=8), nullable=False, server_default="consumer")
        )


def downgrade() -> None:
    with op.batch_alter_table("buyers") as batch_op:
        batch_op.drop_column("buyer_type")
