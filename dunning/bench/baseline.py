"""The least any implementation must do, as a yardstick measured beside the pipeline.

Parse the JSON Lines with orjson, COPY orders, installments and transactions into bare
tables, then one SQL statement for overdue detection and one for a report table. No
validation, no history, no idempotency: the pipeline's ratio to this is what we track.

Bare means no keys, indexes or constraints, but ordinary (WAL-logged) tables like the
pipeline's own: data that must survive a crash is written to the log once more, and the
yardstick should not skip what no real implementation may skip. (UNLOGGED tables roughly
halve the COPY time here; `unlogged=True` measures that variant.)
"""

from __future__ import annotations

import gzip
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import orjson
import psycopg

SCHEMA = "bench_baseline"
BATCH = 20_000


@dataclass
class BaselineResult:
    orders: int = 0
    installments: int = 0
    transactions: int = 0
    cases: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def parse_batch(source) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """The baseline's parse: the next BATCH lines as bare row tuples, unvalidated."""
    orders: list[tuple] = []
    installments: list[tuple] = []
    transactions: list[tuple] = []
    for line in source:
        record = orjson.loads(line)
        oid = record["order_id"]
        buyer = record["buyer"]
        orders.append(
            (
                oid,
                record["merchant_id"],
                record["status"],
                record["currency"],
                record["total_amount"],
                buyer["first_name"],
                buyer["last_name"],
            )
        )
        installments.extend(
            (oid, i["number"], i["due_date"], i["amount"]) for i in record["installments"]
        )
        transactions.extend(
            (oid, t["transaction_id"], t["type"], t["amount"], t.get("installment_number"))
            for t in record["transactions"]
        )
        if len(orders) >= BATCH:
            break
    return orders, installments, transactions


def run_baseline(path: Path, dsn: str, as_of: date, *, unlogged: bool = False) -> BaselineResult:
    """`dsn` is a libpq URL (postgresql://...); the tables live in their own schema."""
    kind = "UNLOGGED TABLE" if unlogged else "TABLE"
    result = BaselineResult(seconds={"parse": 0.0, "copy": 0.0, "sql": 0.0})
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute(
            f"""
            CREATE {kind} {SCHEMA}.orders (order_id text, merchant_id text, status text,
                currency text, total_amount numeric, first_name text, last_name text);
            CREATE {kind} {SCHEMA}.installments (order_id text, number int,
                due_date date, amount numeric);
            CREATE {kind} {SCHEMA}.transactions (order_id text, transaction_id text,
                type text, amount numeric, installment_number int);
            """
        )
        with _open(path) as source:
            while True:
                started = time.perf_counter()
                orders, installments, transactions = parse_batch(source)
                result.seconds["parse"] += time.perf_counter() - started
                if not orders:
                    break
                started = time.perf_counter()
                with conn.cursor() as cur:
                    for table, rows in (
                        ("orders", orders),
                        ("installments", installments),
                        ("transactions", transactions),
                    ):
                        with cur.copy(f"COPY {SCHEMA}.{table} FROM STDIN") as copy:
                            for row in rows:
                                copy.write_row(row)
                result.seconds["copy"] += time.perf_counter() - started
                result.orders += len(orders)
                result.installments += len(installments)
                result.transactions += len(transactions)
        started = time.perf_counter()
        conn.execute(
            f"""
            CREATE TABLE {SCHEMA}.cases AS
            SELECT i.order_id, min(i.due_date) AS default_date,
                   sum(i.amount - coalesce(p.paid, 0)) AS open_amount
            FROM {SCHEMA}.installments i
            LEFT JOIN (SELECT order_id, installment_number, sum(amount) AS paid
                       FROM {SCHEMA}.transactions WHERE type = 'sale'
                       GROUP BY order_id, installment_number) p
              ON p.order_id = i.order_id AND p.installment_number = i.number
            WHERE i.due_date < %s AND i.amount > coalesce(p.paid, 0)
            GROUP BY i.order_id
            """,
            (as_of,),
        )
        conn.execute(
            f"""
            CREATE TABLE {SCHEMA}.report AS
            SELECT c.order_id, o.merchant_id, o.first_name, o.last_name, o.currency,
                   o.total_amount, c.open_amount, %s - c.default_date AS overdue_days
            FROM {SCHEMA}.cases c JOIN {SCHEMA}.orders o USING (order_id)
            """,
            (as_of,),
        )
        result.cases = conn.execute(f"SELECT count(*) FROM {SCHEMA}.cases").fetchone()[0]
        result.seconds["sql"] = time.perf_counter() - started
        conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
    return result
