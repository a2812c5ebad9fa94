"""Detection's SQL where SQLite and PostgreSQL differ (`dunning.tasks.detect` runs it): the
spelling of its statement texts, the candidates and facts statements, and the planner
settings and statistics only PostgreSQL has."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.orm import Session

from dunning.db.dialect import is_postgres

OPEN = "state NOT IN ('paid', 'cancelled', 'uncollectible')"  # = uq_cases_open_order's WHERE


class Spelling:
    """How detection's statement texts are spelled on one database. The local date reads
    the merchant's zone from the bound parameter `:tz` (SQLite: `dunning_local_date`,
    registered on every connection by the engine)."""

    def __init__(self, postgres: bool):
        self.postgres = postgres

    @classmethod
    def of(cls, session: Session) -> Spelling:
        return cls(is_postgres(session))

    @classmethod
    def for_postgres(cls) -> Spelling:
        """The PostgreSQL spelling without a session (module-level statement texts)."""
        return cls(True)

    def local_date(self, expr: str) -> str:
        if self.postgres:
            return f"CAST(timezone(:tz, {expr}) AS DATE)"
        return f"dunning_local_date({expr}, :tz)"

    @property
    def key(self) -> str:
        """The type of an id column of a working table: the collation of the tables' ids
        (dunning.db.types.Key), so that a join by id can use either side's index."""
        return 'VARCHAR(64) COLLATE "C"' if self.postgres else "VARCHAR(64)"

    def greatest(self, *args: str) -> str:
        return f"{'GREATEST' if self.postgres else 'MAX'}({', '.join(args)})"

    def least(self, *args: str) -> str:
        return f"{'LEAST' if self.postgres else 'MIN'}({', '.join(args)})"


def changed_orders_sql(sync_inclusive: bool = False) -> str:
    """The ids of the orders an incremental run looks at: synced since the last run, an
    installment falling due, a payment processed, their merchant's settings changed."""
    synced = ">=" if sync_inclusive else ">"
    return f"""SELECT order_id FROM orders WHERE synced_at {synced} :sync_from
    UNION SELECT order_id FROM installments WHERE due_date >= :due_from AND due_date < :due_to
    UNION SELECT order_id FROM transactions
          WHERE processed_at > :tx_from AND processed_at <= :tx_to
    UNION SELECT c.order_id FROM cases c
          JOIN merchant_settings ms ON ms.merchant_id = c.merchant_id
          WHERE ms.updated_at > :tx_from AND ms.updated_at <= :tx_to AND c.{OPEN}"""


def candidates_sql(
    *, full: bool, sharded: bool, sync_inclusive: bool = False, ids_where: str | None = None
) -> str:
    """`ids_where`: how to pick the changed orders (`changed_ids_where`), instead of
    `changed_orders_sql` inline."""
    shard_join = (
        " JOIN merchants m ON m.merchant_id = o.merchant_id AND m.shard_key % :shards = :shard"
        if sharded
        else ""
    )
    select_ = f"SELECT o.order_id, o.merchant_id, o.status, o.currency FROM orders o{shard_join}"
    if full:
        return select_
    if ids_where is not None:
        return f"{select_} WHERE {ids_where}"
    return f"{select_}\nWHERE o.order_id IN (\n    {changed_orders_sql(sync_inclusive)}\n)"


# Up to this many changed orders (PostgreSQL), an incremental run looks its candidates up
# in `orders` by key: for a day's 17,000 at a million orders, 100-125 ms instead of 170-200
# ms for the hash join of all of `orders` the planner picks. A catch-up of 400,000 took
# 1.6 s by key and 1.1 s joined.
FEW_CHANGED = 50_000


def changed_ids_where(changed: int) -> str:
    """How to pick the candidates out of `orders o`, the ids of the `changed` orders being
    in the temporary table `detect_changed`."""
    if changed <= FEW_CHANGED:
        return "o.order_id = ANY(ARRAY(SELECT order_id FROM detect_changed))"
    return "o.order_id IN (SELECT order_id FROM detect_changed)"


def skip_conflicts(alone: bool) -> str:
    """`ON CONFLICT DO NOTHING`, unless the transaction holds the table it inserts into
    alone (detection's first fill, `first_fill`): no other run can insert the same rows
    then, and the clause made inserting twice as slow."""
    return "" if alone else "ON CONFLICT DO NOTHING"


def room_for_aggregates(session: Session) -> None:
    """PostgreSQL: the fact aggregates of a full run spill to disk with the 4 MB default
    work_mem; no JIT compile either."""
    if is_postgres(session):
        session.execute(text("SET LOCAL work_mem = '256MB'"))
        session.execute(text("SET LOCAL jit = off"))


@contextmanager
def sorted_aggregates(session: Session, wanted: bool) -> Iterator[None]:
    """PostgreSQL, `wanted`: aggregate by sorting within the block. Summing a million
    orders' sales per installment in a hash table took 1.3 s, grouping them in key order
    0.5 s; the planner, misjudging the number of groups, picks the hash."""
    if not (wanted and is_postgres(session)):
        yield
        return
    session.execute(text("SET LOCAL enable_hashagg = off"))
    yield  # an error aborts the transaction, and the setting ends with it
    session.execute(text("SET LOCAL enable_hashagg = on"))


def analyze_temp_table(session: Session, name: str) -> None:
    """PostgreSQL: statistics of a temp table just filled (autovacuum never sees them)."""
    if is_postgres(session):
        session.execute(text(f"ANALYZE {name}"))


def drop_temp_relation(session: Session, name: str) -> None:
    """Drop the session's temporary table or view `name` if it exists (DROP TABLE refuses
    a view, and DROP VIEW a table)."""
    if is_postgres(session):
        kind = session.scalar(
            text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:n)"),
            {"n": f"pg_temp.{name}"},
        )
    else:
        kind = session.scalar(
            text("SELECT type FROM sqlite_temp_master WHERE name = :n"), {"n": name}
        )
    if kind in ("v", "view"):
        session.execute(text(f"DROP VIEW {name}"))
    elif kind is not None:
        session.execute(text(f"DROP TABLE {name}"))


def candidates_are_many(session: Session) -> bool:
    """Whether detect_orders holds a large part of all orders (PostgreSQL's estimate of
    the orders table); always False on SQLite."""
    if not is_postgres(session):
        return False
    candidates = session.scalar(text("SELECT COUNT(*) FROM detect_orders")) or 0
    total = session.scalar(text("SELECT reltuples FROM pg_class WHERE relname = 'orders'")) or 0
    return candidates > 50_000 and candidates > 0.1 * total


def facts_sql(d: Spelling, every_order: bool = False, few: bool = False) -> str:
    """`every_order`: detect_orders holds every order (an unsharded full run), so the
    installments and sales are read whole instead of being joined to it (~2 s less at 1M
    orders); chargebacks still reach their merchant's settings through detect_orders.

    `few`: the candidates of an incremental run. Their transactions are looked up once,
    for both the sales and the refunds and chargebacks (a first run of the day at 1M
    orders: 0.4-0.55 s instead of 0.6 s for 17k candidates). For many candidates two hash
    joins are faster than keeping every transaction aside (4.2 s against 6.5 s at 1M).

    Only installments that can be in default (due before today, or charged back) or belong
    to an open case are joined to their sales: the outer WHERE keeps no other (at 1M
    orders 1.6M of 3M installments, 0.7 s less)."""
    if every_order:
        inst = "installments i"
        sales = "transactions t"
    else:
        inst = "detect_orders d\n    JOIN installments i ON i.order_id = d.order_id"
        sales = "detect_orders d2\n    JOIN transactions t ON t.order_id = d2.order_id"
    # The refunds and chargebacks, with the sale each reverses, as `r` and `x`, and the
    # candidate's merchant as `merchant_id`.
    reversals = """detect_orders d3
      JOIN transactions r ON r.order_id = d3.order_id
      JOIN transactions x ON x.order_id = r.order_id"""
    merchant_id = "d3.merchant_id"
    looked_up = ""
    if few and not every_order:
        looked_up = """WITH tx AS MATERIALIZED (
  SELECT t.order_id, t.transaction_id, t.type, t.amount, t.processed_at,
         t.installment_number, t.reverses_transaction_id, t.fee, d.merchant_id
  FROM detect_orders d JOIN transactions t ON t.order_id = d.order_id
)"""
        reversals = "tx r\n      JOIN tx x ON x.order_id = r.order_id"
        merchant_id = "r.merchant_id"
        sales = "tx t"
    return f"""{looked_up}
SELECT q.order_id, q.number, q.due_date, q.owed, q.paid, q.cb_fee, q.cb_date, q.refunded
FROM (
  SELECT i.order_id, i.number, i.due_date,
         ROUND(i.amount - COALESCE(i.refunded, 0), 2) AS owed,
         ROUND(COALESCE(s.paid, 0) - COALESCE(i.charged_back, 0), 2) AS paid,
         ROUND(COALESCE(i.cb_fee, 0), 2) AS cb_fee,
         ROUND(COALESCE(i.refunded, 0), 2) AS refunded,
         {d.local_date("i.cb_at")} AS cb_date
  FROM (
    SELECT i.order_id, i.number, i.due_date, i.amount,
           r.refunded, r.charged_back, r.cb_fee, r.cb_at
    FROM {inst}
    LEFT JOIN (
      SELECT r.order_id, COALESCE(x.installment_number, 1) AS number,
             SUM(CASE WHEN r.type = 'refund' THEN r.amount ELSE 0 END) AS refunded,
             SUM(CASE WHEN r.type = 'chargeback' THEN r.amount ELSE 0 END) AS charged_back,
             SUM(CASE WHEN r.type = 'chargeback'
                      THEN COALESCE(r.fee, ms.chargeback_fee, :default_fee) ELSE 0 END) AS cb_fee,
             MIN(CASE WHEN r.type = 'chargeback' THEN r.processed_at END) AS cb_at
      FROM {reversals}
                         AND x.transaction_id = r.reverses_transaction_id AND x.type = 'sale'
      LEFT JOIN merchant_settings ms ON ms.merchant_id = {merchant_id}
      WHERE r.type IN ('refund', 'chargeback') AND r.processed_at <= :as_of
      GROUP BY r.order_id, COALESCE(x.installment_number, 1)
    ) r ON r.order_id = i.order_id AND r.number = i.number
    WHERE i.due_date < :today OR r.cb_at IS NOT NULL
       OR EXISTS (SELECT 1 FROM detect_open o WHERE o.order_id = i.order_id)
  ) i
  LEFT JOIN (
    SELECT t.order_id, COALESCE(t.installment_number, 1) AS number, SUM(t.amount) AS paid
    FROM {sales}
    WHERE t.type = 'sale' AND t.processed_at <= :as_of
    GROUP BY t.order_id, COALESCE(t.installment_number, 1)
  ) s ON s.order_id = i.order_id AND s.number = i.number
) q
WHERE (q.owed - q.paid > 0 AND (q.due_date < :today OR q.cb_date IS NOT NULL))
   OR EXISTS (SELECT 1 FROM detect_open o WHERE o.order_id = q.order_id)"""
