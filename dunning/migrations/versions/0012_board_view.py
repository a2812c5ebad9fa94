"""case_report becomes a view over case_report_rows: overdue_days counted where it is read

The table keeps each case's default date (and the day a closed case closed) instead of
overdue_days, so the first refresh of a day rewrites only the rows whose content changed.
The view has the same name and columns as the old table; analysts' queries keep working.
The board's day is the day of the newest refresh (report_marks.board_day, was rebuilt_day).
"""

import sqlalchemy as sa
from alembic import op

revision, down_revision = "0012", "0011"

TERMINAL = "('paid', 'cancelled', 'uncollectible')"
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
    "partner_reference, blocked_reason, refreshed_at"
)
BOARD_DAY = "(SELECT board_day FROM report_marks ORDER BY as_of DESC LIMIT 1)"


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _days(end: str, start: str) -> str:
    """Calendar days from `start` to `end` (dates), never negative."""
    if _postgres():
        return f"GREATEST({end} - {start}, 0)"
    return f"MAX(CAST(julianday({end}) - julianday({start}) AS INTEGER), 0)"


def _plus_days(day: str, days: str) -> str:
    if _postgres():
        return f"{day} + {days}"
    return f"date({day}, '+' || {days} || ' days')"


def _create_views() -> None:
    overdue = _days(f"COALESCE(closed_day, {BOARD_DAY})", "default_date")
    op.execute(
        f"CREATE VIEW case_report AS SELECT {BEFORE}, {overdue} AS overdue_days, {AFTER}, "
        "search_text FROM case_report_rows"
    )
    op.execute(
        f"CREATE VIEW v_cases_in_progress AS SELECT {BEFORE}, overdue_days, {AFTER} "
        f"FROM case_report WHERE state IN {IN_PROGRESS}"
    )


def _comments() -> None:
    from dunning.models.report_tables import (
        CASE_REPORT_COLUMN_COMMENTS,
        CASE_REPORT_COMMENT,
        CASE_REPORT_ROWS_COMMENT,
    )

    op.create_table_comment("case_report_rows", CASE_REPORT_ROWS_COMMENT)
    for column in ("default_date", "closed_day"):
        op.alter_column("case_report_rows", column, comment=CASE_REPORT_COLUMN_COMMENTS[column])
    conn = op.get_bind()
    conn.exec_driver_sql(f"COMMENT ON VIEW case_report IS '{CASE_REPORT_COMMENT}'")
    for column, comment in CASE_REPORT_COLUMN_COMMENTS.items():
        if column not in ("default_date", "closed_day", "waiting_reason"):  # 0013 adds it
            text = comment.replace("'", "''")
            conn.exec_driver_sql(f"COMMENT ON COLUMN case_report.{column} IS '{text}'")
    op.execute(
        "COMMENT ON VIEW v_cases_in_progress IS "
        "'Case board rows in progress (In Bearbeitung): scheduled to order_cancelled.'"
    )


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS v_cases_in_progress")
    op.rename_table("case_report", "case_report_rows")
    with op.batch_alter_table("report_marks") as batch_op:
        batch_op.alter_column("rebuilt_day", new_column_name="board_day")
    with op.batch_alter_table("case_report_rows") as batch_op:
        batch_op.add_column(sa.Column("default_date", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("closed_day", sa.Date(), nullable=True))
    # The rows carry over: the case's default date, or for a row whose case is gone (the
    # next refresh removes it) the one its overdue_days implied; a closed case's count
    # stops where it stood.
    if _postgres():
        implied = "(refreshed_at AT TIME ZONE 'UTC')::date - overdue_days"
    else:
        implied = "date(substr(refreshed_at, 1, 10), '-' || overdue_days || ' days')"
    op.execute(
        "UPDATE case_report_rows SET default_date = COALESCE((SELECT c.default_date FROM "
        f"cases c WHERE c.case_id = case_report_rows.case_id), {implied})"
    )
    op.execute(
        f"UPDATE case_report_rows SET closed_day = {_plus_days('default_date', 'overdue_days')} "
        f"WHERE state IN {TERMINAL}"
    )
    with op.batch_alter_table("case_report_rows") as batch_op:
        batch_op.alter_column("default_date", existing_type=sa.Date(), nullable=False)
        batch_op.drop_column("overdue_days")
    _create_views()
    if _postgres():
        _comments()


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS v_cases_in_progress")
    op.execute("CREATE TABLE case_report_days AS SELECT case_id, overdue_days FROM case_report")
    op.execute("DROP VIEW case_report")
    with op.batch_alter_table("case_report_rows") as batch_op:
        batch_op.add_column(sa.Column("overdue_days", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE case_report_rows SET overdue_days = (SELECT d.overdue_days FROM "
        "case_report_days d WHERE d.case_id = case_report_rows.case_id)"
    )
    op.drop_table("case_report_days")
    with op.batch_alter_table("case_report_rows") as batch_op:
        batch_op.alter_column("overdue_days", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("closed_day")
        batch_op.drop_column("default_date")
    op.rename_table("case_report_rows", "case_report")
    with op.batch_alter_table("report_marks") as batch_op:
        batch_op.alter_column("board_day", new_column_name="rebuilt_day")
    op.execute(
        f"CREATE VIEW v_cases_in_progress AS SELECT {BEFORE}, overdue_days, {AFTER} "
        f"FROM case_report WHERE state IN {IN_PROGRESS}"
    )
