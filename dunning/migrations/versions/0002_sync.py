"""sync tables and columns

Children of orders (buyers, installments, transactions) lose their foreign key to
orders: its per-row check made up about 45 % of the bulk load time (measured: COPY of
295k installments 2.5 s with it, 0.8 s without). The sync loader is their only writer and
writes them only for orders it upserted in the same transaction.

Quarantine entries remember the record's updated_at (a later valid snapshot resolves
them) and a digest of the raw bytes (a rerun never quarantines the same bytes twice).
"""

import sqlalchemy as sa
from alembic import op

import dunning.db.types

revision, down_revision = "0002", "0001"


CHILDREN = ("buyers", "installments", "transactions")


def upgrade() -> None:
    for table in CHILDREN:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f"fk_{table}_order_id_orders", type_="foreignkey")
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "record_updated_at",
                dunning.db.types.UTCDateTime(timezone=True),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("digest", sa.String(length=64), nullable=True))
        batch_op.create_index("uq_quarantine_source_digest", ["source", "digest"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_index("uq_quarantine_source_digest")
        batch_op.drop_column("digest")
        batch_op.drop_column("record_updated_at")
    for table in CHILDREN:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_foreign_key(
                f"fk_{table}_order_id_orders",
                "orders",
                ["order_id"],
                ["order_id"],
                ondelete="CASCADE",
            )
