"""cases.waiting_reason and the board's column: why a due step waits on an outside system

A step whose partner or mail server does not answer stays pending and is retried by the
next run; the case says why until then, and the board (case_report) shows it.
"""

import sqlalchemy as sa
from alembic import op

revision, down_revision = "0013", "0012"

IN_PROGRESS = (
    "('scheduled', 'reminder_1', 'reminder_2', 'with_partner', 'court', 'order_cancelled')"
)
BEFORE = (
    "case_id, merchant_id, order_id, first_name, last_name, payment_plan, payment_method, "
    "kind, state, state_label"
)
AFTER = (
    "outstanding_amount, order_amount, paid_amount, cancellation_costs, fees_amount, "
    "interest_amount, dunning_option, currency, opened_at, last_step_at, next_step_at, "
    "partner_reference, blocked_reason, {waiting}refreshed_at"
)
BOARD_DAY = "(SELECT board_day FROM report_marks ORDER BY as_of DESC LIMIT 1)"
COMMENT = (
    "Why its due step waits on an outside system (partner or mail unreachable), retried by "
    "the next run; NULL when nothing waits."
)


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _views(with_waiting: bool) -> None:
    """(Re)create the board's views as of 0012, with or without waiting_reason."""
    op.execute("DROP VIEW IF EXISTS v_cases_in_progress")
    op.execute("DROP VIEW IF EXISTS case_report")
    after = AFTER.format(waiting="waiting_reason, " if with_waiting else "")
    closed_or_day = f"COALESCE(closed_day, {BOARD_DAY})"
    if _postgres():
        overdue = f"GREATEST({closed_or_day} - default_date, 0)"
    else:
        overdue = f"MAX(CAST(julianday({closed_or_day}) - julianday(default_date) AS INTEGER), 0)"
    op.execute(
        f"CREATE VIEW case_report AS SELECT {BEFORE}, {overdue} AS overdue_days, {after}, "
        "search_text FROM case_report_rows"
    )
    op.execute(
        f"CREATE VIEW v_cases_in_progress AS SELECT {BEFORE}, overdue_days, {after} "
        f"FROM case_report WHERE state IN {IN_PROGRESS}"
    )
    if _postgres():
        from dunning.models.report_tables import CASE_REPORT_COLUMN_COMMENTS, CASE_REPORT_COMMENT

        conn = op.get_bind()
        conn.exec_driver_sql(f"COMMENT ON VIEW case_report IS '{CASE_REPORT_COMMENT}'")
        for column, comment in CASE_REPORT_COLUMN_COMMENTS.items():
            if column in ("default_date", "closed_day"):
                continue
            if column == "waiting_reason" and not with_waiting:
                continue
            text = comment.replace("'", "''")
            conn.exec_driver_sql(f"COMMENT ON COLUMN case_report.{column} IS '{text}'")
        op.execute(
            "COMMENT ON VIEW v_cases_in_progress IS "
            "'Case board rows in progress (In Bearbeitung): scheduled to order_cancelled.'"
        )


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch_op:
        batch_op.add_column(sa.Column("waiting_reason", sa.Text(), nullable=True))
    op.execute("DROP VIEW IF EXISTS v_cases_in_progress")
    op.execute("DROP VIEW IF EXISTS case_report")
    with op.batch_alter_table("case_report_rows") as batch_op:
        batch_op.add_column(
            sa.Column(
                "waiting_reason", sa.Text(), nullable=True, comment=COMMENT if _postgres() else None
            )
        )
    _views(with_waiting=True)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS v_cases_in_progress")
    op.execute("DROP VIEW IF EXISTS case_report")
    with op.batch_alter_table("case_report_rows") as batch_op:
        batch_op.drop_column("waiting_reason")
    with op.batch_alter_table("cases") as batch_op:
        batch_op.drop_column("waiting_reason")
    _views(with_waiting=False)
