"""incremental board refresh: case_report_pending (filled by triggers), report_marks"""

import sqlalchemy as sa
from alembic import op

import dunning.db.types

revision, down_revision = "0007", "0006"

# (table, how a changed row of it names its cases, the writes that matter)
SOURCES = (
    ("cases", "case_id", ("insert", "update", "delete")),
    ("orders", "order_id", ("insert", "update")),
    ("buyers", "order_id", ("insert", "update")),
)


def _postgres_triggers() -> None:
    # Statement-level with transition tables: one INSERT ... SELECT per statement, so a bulk
    # write of 500k cases costs one extra statement, not 500k trigger calls.
    op.execute(
        """
        CREATE FUNCTION case_report_pending_by_case() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          INSERT INTO case_report_pending (case_id) SELECT case_id FROM changed_rows;
          RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION case_report_pending_by_order() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          INSERT INTO case_report_pending (case_id)
          SELECT c.case_id FROM changed_rows n JOIN cases c ON c.order_id = n.order_id;
          RETURN NULL;
        END $$
        """
    )
    for table, key, events in SOURCES:
        function = f"case_report_pending_by_{'case' if key == 'case_id' else 'order'}"
        for event in events:
            rows = "OLD" if event == "delete" else "NEW"
            op.execute(
                f"CREATE TRIGGER {table}_report_pending_{event} AFTER {event.upper()} ON {table} "
                f"REFERENCING {rows} TABLE AS changed_rows FOR EACH STATEMENT "
                f"EXECUTE FUNCTION {function}()"
            )


def _sqlite_triggers() -> None:
    for table, key, events in SOURCES:
        for event in events:
            row = "OLD" if event == "delete" else "NEW"
            if key == "case_id":
                body = f"INSERT INTO case_report_pending (case_id) VALUES ({row}.case_id);"
            else:
                body = (
                    "INSERT INTO case_report_pending (case_id) "
                    f"SELECT case_id FROM cases WHERE order_id = {row}.order_id;"
                )
            op.execute(
                f"CREATE TRIGGER {table}_report_pending_{event} AFTER {event.upper()} ON {table} "
                f"BEGIN {body} END"
            )


def upgrade() -> None:
    op.create_table(
        "case_report_pending",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_report_pending")),
    )
    op.create_table(
        "report_marks",
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("rebuilt_day", sa.Date(), nullable=False),
        sa.Column("as_of", dunning.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_report_marks")),
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgres_triggers()
        from dunning.models.schema import CASE_REPORT_COLUMN_COMMENTS

        op.alter_column(
            "case_report", "refreshed_at", comment=CASE_REPORT_COLUMN_COMMENTS["refreshed_at"]
        )
    else:
        _sqlite_triggers()


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, _key, events in SOURCES:
        for event in events:
            on = f" ON {table}" if postgres else ""
            op.execute(f"DROP TRIGGER IF EXISTS {table}_report_pending_{event}{on}")
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS case_report_pending_by_case()")
        op.execute("DROP FUNCTION IF EXISTS case_report_pending_by_order()")
    op.drop_table("report_marks")
    op.drop_table("case_report_pending")
