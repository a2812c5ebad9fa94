"""ids compare byte by byte: order, merchant and transaction ids get COLLATE "C" (PostgreSQL)

Under the server's locale (C.UTF-8 here, en_US.UTF-8 on many servers) every comparison of
two ids in an index, a join or a sort went through the locale's collation. Ids are never
read as words: bytewise they compare faster, sort the same on every server, and UTF-8's
byte order is its code point order. The column's type does not change, so the tables are
not rewritten; their indexes on these columns are rebuilt (5 s at a million orders). The
board's table (case_report_rows, read through the case_report views) keeps its collation:
the board filters it by a given id and never joins it by id.
"""

import sqlalchemy as sa
from alembic import op

revision, down_revision = "0016", "0015"

COLUMNS = {
    "merchants": ("merchant_id",),
    "merchant_settings": ("merchant_id",),
    "merchant_settings_history": ("merchant_id",),
    "orders": ("order_id", "merchant_id"),
    "buyers": ("order_id",),
    "installments": ("order_id",),
    "transactions": ("order_id", "transaction_id", "reverses_transaction_id"),
    "quarantine": ("order_id",),
    "cases": ("order_id", "merchant_id"),
}


def _collate(collation: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table, columns in COLUMNS.items():  # one ALTER per table: its indexes rebuilt once
        changes = ", ".join(
            f"ALTER COLUMN {c} TYPE VARCHAR(64) COLLATE {collation}" for c in columns
        )
        op.execute(f"ALTER TABLE {table} {changes}")
        # The new type drops the columns' statistics, and nothing brings them back soon
        # (autovacuum analyzes after writes): without them the planner joins by guesswork.
        # An empty table (a new installation) stays never analyzed, as it was.
        if bind.execute(sa.text(f"SELECT EXISTS (SELECT 1 FROM {table})")).scalar():
            op.execute(f"ANALYZE {table} ({', '.join(columns)})")


def upgrade() -> None:
    _collate('"C"')


def downgrade() -> None:
    _collate('"default"')
