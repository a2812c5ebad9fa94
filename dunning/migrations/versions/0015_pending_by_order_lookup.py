"""the board's change log finds an order's cases by index lookups

`case_report_pending_by_order` (the orders' and buyers' statement trigger) joined the
written rows to `cases` by order id. The planner cannot see how many rows a transition
table holds, and for a batch of 5,000 updated orders it merged them with the whole of
`ix_cases_order_id` (290k entries at a million orders, 65-105 ms per batch). Looking the
ids up in that index costs a few milliseconds. PostgreSQL only (SQLite's triggers are
per row and already look up).
"""

from alembic import op

revision, down_revision = "0015", "0014"

_BODY = """
CREATE OR REPLACE FUNCTION case_report_pending_by_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO case_report_pending (case_id)
  SELECT c.case_id FROM cases c
  WHERE c.order_id = ANY(ARRAY(SELECT order_id FROM changed_rows));
  RETURN NULL;
END $$
"""

_BEFORE = """
CREATE OR REPLACE FUNCTION case_report_pending_by_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO case_report_pending (case_id)
  SELECT c.case_id FROM changed_rows n JOIN cases c ON c.order_id = n.order_id;
  RETURN NULL;
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_BODY)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_BEFORE)
