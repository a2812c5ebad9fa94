"""cases tables and columns (issue 4: detection, handover rules, operator actions)"""

import sqlalchemy as sa
from alembic import op

import dunning.db.types

revision, down_revision = "0003", "0002"

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TS = dunning.db.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("routed_at", UTC_TS, nullable=True))
        batch_op.create_index(
            "ix_cases_unrouted",
            ["case_id"],
            unique=False,
            sqlite_where=sa.text("routed_at IS NULL"),
            postgresql_where=sa.text("routed_at IS NULL"),
        )
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.create_index("ix_transactions_processed_at", ["processed_at"], unique=False)
    op.create_table(
        "case_items",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("case_id", BigId, nullable=False),
        sa.Column("item_type", sa.String(length=24), nullable=False),
        sa.Column("installment_number", sa.Integer(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("default_date", sa.Date(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("paid_amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("joined_at", UTC_TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.case_id"], name=op.f("fk_case_items_case_id_cases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_items")),
    )
    with op.batch_alter_table("case_items", schema=None) as batch_op:
        batch_op.create_index(
            "uq_case_items_case_item",
            ["case_id", "installment_number", "item_type"],
            unique=True,
        )
    op.create_table(
        "detect_marks",
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("synced_mark", UTC_TS, nullable=True),
        sa.Column("synced_count", sa.Integer(), nullable=True),
        sa.Column("as_of", UTC_TS, nullable=False),
        sa.Column("full_as_of", UTC_TS, nullable=False),
        sa.Column("updated_at", UTC_TS, nullable=False),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_detect_marks")),
    )


def downgrade() -> None:
    op.drop_table("detect_marks")
    with op.batch_alter_table("case_items", schema=None) as batch_op:
        batch_op.drop_index("uq_case_items_case_item")
    op.drop_table("case_items")
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_transactions_processed_at")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index("ix_cases_unrouted")
        batch_op.drop_column("routed_at")
