"""reporting tables and columns

Revision ID: 0005
Revises: 0004

Issue 6: the board's search column and filter indexes on case_report, the daily snapshot
table, the view of cases in progress, and (PostgreSQL) comments on the reporting table.
"""

import sqlalchemy as sa
from alembic import op

import dunning.db.types

revision, down_revision = "0005", "0004"

IN_PROGRESS = ("scheduled", "reminder_1", "reminder_2", "with_partner", "court", "order_cancelled")
VIEW_COLUMNS = (
    "case_id, merchant_id, order_id, first_name, last_name, payment_plan, payment_method, "
    "kind, state, state_label, overdue_days, outstanding_amount, order_amount, paid_amount, "
    "cancellation_costs, fees_amount, interest_amount, dunning_option, currency, opened_at, "
    "last_step_at, next_step_at, partner_reference, blocked_reason, refreshed_at"
)


def upgrade() -> None:
    with op.batch_alter_table("case_report", schema=None) as batch_op:
        batch_op.add_column(sa.Column("search_text", sa.Text(), nullable=True))
        batch_op.create_index("ix_case_report_opened_at", ["opened_at"], unique=False)

    op.create_table(
        "case_report_daily",
        sa.Column("snapshot_date", sa.Date(), nullable=False),
        sa.Column("merchant_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("case_count", sa.Integer(), nullable=False),
        sa.Column("outstanding_amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("order_amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("paid_amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("refreshed_at", dunning.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "snapshot_date", "merchant_id", "state", "currency", name=op.f("pk_case_report_daily")
        ),
    )

    states = ", ".join(f"'{s}'" for s in IN_PROGRESS)
    op.execute(
        f"CREATE VIEW v_cases_in_progress AS SELECT {VIEW_COLUMNS} FROM case_report "
        f"WHERE state IN ({states})"
    )

    if op.get_bind().dialect.name == "postgresql":
        # The texts live beside the model so `alembic check` compares them.
        from dunning.models.schema import CASE_REPORT_COLUMN_COMMENTS, CASE_REPORT_COMMENT

        op.create_table_comment("case_report", CASE_REPORT_COMMENT)
        for column, comment in CASE_REPORT_COLUMN_COMMENTS.items():
            if column not in ("default_date", "closed_day", "waiting_reason"):  # 0012, 0013
                op.alter_column("case_report", column, comment=comment)
        op.execute(
            "COMMENT ON VIEW v_cases_in_progress IS "
            "'Case board rows in progress (In Bearbeitung): scheduled to order_cancelled.'"
        )
        op.create_table_comment(
            "case_report_daily",
            "Daily snapshot of the case board: counts and amounts per merchant, state, currency.",
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_table_comment("case_report")
        from dunning.models.schema import CASE_REPORT_COLUMN_COMMENTS

        for column in CASE_REPORT_COLUMN_COMMENTS:
            if column != "search_text":
                op.alter_column("case_report", column, comment=None)
    op.execute("DROP VIEW IF EXISTS v_cases_in_progress")
    op.drop_table("case_report_daily")
    with op.batch_alter_table("case_report", schema=None) as batch_op:
        batch_op.drop_index("ix_case_report_opened_at")
        batch_op.drop_column("search_text")
