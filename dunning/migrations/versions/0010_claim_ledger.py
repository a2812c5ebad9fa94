"""claim ledger: case_charges (reminder fees and costs with their day and reason), the
merchant's minimum claim, and the partner's claim id as the board's partner reference

Existing cases are carried over: their reminder fees (one per reminder sent, on the
reminder's day) and cancellation costs become charges; the rest of their events (items,
payments, chargebacks) is already in the database. Payments that earlier versions already
reported to the partner (as a running total) are marked told under the new per-payment
keys, so none is reported twice. The running totals (`reminder_fees`, `partner_told_paid`)
go: the charges and the actions hold that now.
"""

import sqlalchemy as sa
from alembic import op

import dunning.db.types

revision, down_revision = "0010", "0009"

UTC_TS = dunning.db.types.UTCDateTime(timezone=True)
MONEY = sa.Numeric(precision=14, scale=2)


def upgrade() -> None:
    op.create_table(
        "case_charges",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.case_id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("uq_case_charges_case_key", "case_charges", ["case_id", "key"], unique=True)
    with op.batch_alter_table("merchant_settings") as batch:
        batch.add_column(
            sa.Column("min_claim_amount", MONEY, nullable=False, server_default="5.00")
        )
    op.execute(
        "UPDATE cases SET partner_reference = partner_claim_id WHERE partner_claim_id IS NOT NULL"
    )
    day = "CAST({} AS DATE)" if op.get_bind().dialect.name == "postgresql" else "DATE({})"
    half = "ROUND(reminder_fees / 2.0, 2)"
    op.execute(
        f"""INSERT INTO case_charges (case_id, key, kind, day, amount, reason, created_at)
        SELECT case_id, 'reminder_1', 'reminder_fee', {day.format("reminder_1_at")},
               CASE WHEN reminder_2_at IS NULL THEN reminder_fees ELSE {half} END,
               '1. Mahnung', reminder_1_at
        FROM cases WHERE reminder_fees > 0 AND reminder_1_at IS NOT NULL"""
    )
    op.execute(
        f"""INSERT INTO case_charges (case_id, key, kind, day, amount, reason, created_at)
        SELECT case_id, 'reminder_2', 'reminder_fee', {day.format("reminder_2_at")},
               reminder_fees - {half}, '2. Mahnung', reminder_2_at
        FROM cases
        WHERE reminder_fees > 0 AND reminder_1_at IS NOT NULL AND reminder_2_at IS NOT NULL"""
    )
    op.execute(
        f"""INSERT INTO case_charges (case_id, key, kind, day, amount, reason, created_at)
        SELECT case_id, 'cancellation', 'cancellation_costs',
               {day.format("COALESCE(last_step_at, updated_at)")}, cancellation_costs,
               'Stornokosten', COALESCE(last_step_at, updated_at)
        FROM cases WHERE cancellation_costs > 0"""
    )
    op.execute(
        """INSERT INTO actions (case_id, step, idempotency_key, status, attempts, created_at,
                                done_at, last_error)
        SELECT c.case_id, 'partner_payment',
               'case-' || c.case_id || '-payment-' || t.transaction_id, 'done', 0,
               told.at, told.at, 'reported in a total before version 0010'
        FROM cases c
        JOIN (SELECT case_id, MAX(created_at) AS at FROM actions
              WHERE step = 'partner_payment' GROUP BY case_id) told ON told.case_id = c.case_id
        JOIN transactions t ON t.order_id = c.order_id AND t.type = 'sale'
        WHERE c.handed_over_at IS NOT NULL AND t.processed_at > c.handed_over_at
          AND t.processed_at <= told.at"""
    )
    # Plain DROP COLUMN (SQLite >= 3.35): a batch copy of `cases` would break the foreign
    # keys that point at it.
    op.execute("ALTER TABLE cases DROP COLUMN reminder_fees")
    op.execute("ALTER TABLE cases DROP COLUMN partner_told_paid")


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("reminder_fees", MONEY, nullable=False, server_default="0"))
        batch.add_column(sa.Column("partner_told_paid", MONEY, nullable=False, server_default="0"))
    with op.batch_alter_table("merchant_settings") as batch:
        batch.drop_column("min_claim_amount")
    op.drop_index("uq_case_charges_case_key", table_name="case_charges")
    op.drop_table("case_charges")
