"""PostgreSQL's way of writing a batch of orders: COPY, and one guarded upsert.

Fresh orders are COPYed straight into their tables; newer snapshots of known orders are
COPYed into temporary staging tables, the orders upserted from there in one statement
(RETURNING tells inserted from updated), their rows of the other tables deleted, updated
or added where they differ. `dunning.db.order_writes` chooses this path.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import orjson
from sqlalchemy import Connection

from dunning.models.record_rows import (
    BUYER_COLUMNS,
    INSTALLMENT_COLUMNS,
    ORDER_COLUMNS,
    TRANSACTION_COLUMNS,
    OrderRows,
)
from dunning.models.sharding import shard_key

_STAGE_DDL = """
CREATE TEMP TABLE IF NOT EXISTS sync_stage_orders (
    order_id text, merchant_id text, merchant_name text, order_date timestamptz,
    updated_at timestamptz, status text, currency text, total_amount numeric(14,2),
    product_id text, product_name text, payment_plan text, payment_method text
) ON COMMIT DELETE ROWS
"""

# Merchants the table already has as they are are left out before the upsert, which would
# lock each of them (every batch names most merchants again: 200k locks at a million orders).
_MERCHANTS_PG = """
INSERT INTO merchants AS m (merchant_id, name, shard_key, created_at, updated_at)
SELECT id, name, key, %(now)s, %(now)s
FROM json_to_recordset(%(merchants)s::json) AS u(id text, name text, key int)
WHERE NOT EXISTS (SELECT 1 FROM merchants k WHERE k.merchant_id = u.id
                  AND (u.name IS NULL OR k.name IS NOT DISTINCT FROM u.name))
ORDER BY id
ON CONFLICT (merchant_id) DO UPDATE SET name = EXCLUDED.name, updated_at = EXCLUDED.updated_at
WHERE EXCLUDED.name IS NOT NULL AND m.name IS DISTINCT FROM EXCLUDED.name
"""

_ORDER_SET = ", ".join(f"{c} = EXCLUDED.{c}" for c in ORDER_COLUMNS[1:] if c != "merchant_name")
_ORDER_COLS = ", ".join(c for c in ORDER_COLUMNS if c != "merchant_name")

_CHILD_STAGE_DDL = """
CREATE TEMP TABLE IF NOT EXISTS sync_stage_buyers (LIKE buyers) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS sync_stage_installments (LIKE installments)
    ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS sync_stage_transactions (LIKE transactions)
    ON COMMIT DELETE ROWS
"""


# A batch's order ids (and merchants) as one JSON text, unpacked by the server: psycopg
# dumps a Python list into an array parameter in Python, 1.7 s of a million-order load's
# main thread (which shares the GIL with the reader); orjson writes it in C. JSON holds any
# id exactly.
_IDS = "ARRAY(SELECT json_array_elements_text(%(ids)s::json))"


def _json_list(ids: list[str]) -> str:
    return orjson.dumps(ids).decode()


def _changed_sql(table: str, columns: tuple[str, ...], key: tuple[str, ...], guard: str) -> str:
    """Update the rows of `table` whose staged snapshot differs; equal rows are not touched.
    (An upsert locks every conflicting row, equal or not: a dirtied page, and after a
    checkpoint a full page image in the WAL, for each of them.)"""
    values = [c for c in columns if c not in key]
    match = " AND ".join(f"t.{c} = s.{c}" for c in key)
    mine = ", ".join(f"t.{c}" for c in values)
    theirs = ", ".join(f"s.{c}" for c in values)
    return (
        f"UPDATE {table} AS t SET ({', '.join(values)}) = ROW({theirs}) "
        f"FROM sync_stage_{table} s WHERE {match} AND {guard}"
        f"ROW({mine}) IS DISTINCT FROM ROW({theirs})"
    )


def _added_sql(table: str, columns: tuple[str, ...], key: tuple[str, ...]) -> str:
    """Insert the staged rows `table` does not have yet. The order rows are locked by this
    transaction, so no other sync adds rows of these orders meanwhile."""
    cols = ", ".join(columns)
    match = " AND ".join(f"t.{c} = s.{c}" for c in key)
    return (
        f"INSERT INTO {table} ({cols}) SELECT {cols} FROM sync_stage_{table} s "
        f"WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {match}) ORDER BY {', '.join(key)}"
    )


def _gone_sql(table: str, key: tuple[str, ...]) -> str:
    """Delete the rows of the updated orders that their newer snapshot no longer has."""
    match = " AND ".join(f"s.{c} = t.{c}" for c in key)
    return (
        f"DELETE FROM {table} t WHERE t.order_id = ANY({_IDS}) AND NOT EXISTS "
        f"(SELECT 1 FROM sync_stage_{table} s WHERE {match})"
    )


_MERGE_CHILDREN_PG = (
    _gone_sql("installments", ("order_id", "number")),
    _changed_sql("installments", INSTALLMENT_COLUMNS, ("order_id", "number"), ""),
    _added_sql("installments", INSTALLMENT_COLUMNS, ("order_id", "number")),
    _gone_sql("transactions", ("order_id", "transaction_id")),
    _changed_sql("transactions", TRANSACTION_COLUMNS, ("order_id", "transaction_id"), ""),
    _added_sql("transactions", TRANSACTION_COLUMNS, ("order_id", "transaction_id")),
    # A purged buyer stays purged: a newer snapshot does not bring the data back.
    _changed_sql("buyers", BUYER_COLUMNS, ("order_id",), "t.anonymised_at IS NULL AND "),
    _added_sql("buyers", BUYER_COLUMNS, ("order_id",)),
)
_ORDERS_PG = f"""
INSERT INTO orders AS o ({_ORDER_COLS}, source, synced_at)
SELECT {_ORDER_COLS}, %(source)s, %(now)s FROM sync_stage_orders ORDER BY order_id
ON CONFLICT (order_id) DO UPDATE SET {_ORDER_SET}, source = EXCLUDED.source,
    synced_at = EXCLUDED.synced_at
WHERE o.updated_at < EXCLUDED.updated_at
RETURNING o.order_id, (o.xmax = 0) AS inserted
"""


def write_orders_pg(
    conn: Connection, source: str, orders: list[OrderRows], as_of: datetime
) -> tuple[int, int]:
    """Fresh orders are COPYed straight into `orders`; newer snapshots of known orders go
    through the staging table and one guarded upsert. Existing rows of the batch are
    locked first (FOR UPDATE), so the decision holds until commit; should another sync
    insert one of the fresh ids meanwhile, the COPY fails inside a savepoint and the
    whole batch takes the guarded upsert instead."""
    dbapi = conn.connection.driver_connection
    cur = dbapi.cursor()
    try:
        # A crash of the server may lose the newest batches, but never half of one: the
        # watermark commits with its data. Not waiting for the WAL flush saves a fsync.
        cur.execute("SET LOCAL synchronous_commit = off")
        ids = [o.order[0] for o in orders]
        cur.execute(
            f"SELECT order_id, updated_at FROM orders WHERE order_id = ANY({_IDS}) "
            "ORDER BY order_id FOR UPDATE",
            {"ids": _json_list(ids)},
        )
        existing = dict(cur.fetchall())
        fresh = [o for o in orders if o.order[0] not in existing]
        newer = [
            o for o in orders if o.order[0] in existing and existing[o.order[0]] < o.updated_at
        ]
        if not fresh and not newer:
            return 0, 0
        _upsert_merchants_pg(cur, fresh + newer, as_of)
        inserted: list[OrderRows] = []
        if fresh:
            stamp = as_of.isoformat()  # formatted once, not per row
            cur.execute("SAVEPOINT sync_fresh")
            try:
                _copy(
                    cur,
                    "orders",
                    (*(c for c in ORDER_COLUMNS if c != "merchant_name"), "source", "synced_at"),
                    (_order_row(o.order, source, stamp) for o in fresh),
                )
                cur.execute("RELEASE SAVEPOINT sync_fresh")
                inserted = fresh
            except Exception as exc:  # a concurrent sync inserted one of them
                import psycopg

                if not isinstance(exc, psycopg.errors.UniqueViolation):
                    raise
                cur.execute("ROLLBACK TO SAVEPOINT sync_fresh")
                newer = fresh + newer
        updated_ids: list[str] = []
        if newer:
            cur.execute(_STAGE_DDL)
            _copy(cur, "sync_stage_orders", ORDER_COLUMNS, (o.order for o in newer))
            cur.execute(_ORDERS_PG, {"source": source, "now": as_of})
            applied = cur.fetchall()
            cur.execute("TRUNCATE sync_stage_orders")
            taken = {oid for oid, was_inserted in applied if was_inserted}
            updated_ids = [oid for oid, was_inserted in applied if not was_inserted]
            inserted += [o for o in newer if o.order[0] in taken]
            if updated_ids:
                kept = set(updated_ids)
                _merge_children_pg(cur, [o for o in newer if o.order[0] in kept], updated_ids)
        _copy_children(cur, inserted, "")
        return len(inserted), len(updated_ids)
    finally:
        cur.close()


def _merge_children_pg(cur, updated: list[OrderRows], ids: list[str]) -> None:
    """Buyer, installments and transactions of orders that got a newer snapshot: staged,
    then only what differs is written. A new snapshot mostly adds a payment; rewriting
    every child row cost twice the time (index entries and WAL for unchanged rows)."""
    cur.execute(_CHILD_STAGE_DDL)
    _copy_children(cur, updated, "sync_stage_")
    for statement in _MERGE_CHILDREN_PG:
        cur.execute(statement, {"ids": _json_list(ids)} if "%(ids)s" in statement else None)


def _copy_children(cur, orders: list[OrderRows], prefix: str) -> None:
    """COPY the buyers, installments and transactions of `orders` into `prefix` + table."""
    _copy(cur, f"{prefix}buyers", BUYER_COLUMNS, (o.buyer for o in orders))
    _copy(
        cur,
        f"{prefix}installments",
        INSTALLMENT_COLUMNS,
        (row for o in orders for row in o.installments),
    )
    _copy(
        cur,
        f"{prefix}transactions",
        TRANSACTION_COLUMNS,
        (row for o in orders for row in o.transactions),
    )


def _order_row(row: tuple, source: str, as_of: str) -> tuple:
    # ORDER_COLUMNS without merchant_name (index 2), then source and synced_at
    return (*row[:2], *row[3:], source, as_of)


def _copy(cur, table: str, columns: Iterable[str], rows: Iterable[tuple]) -> None:
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        write = copy.write_row
        for row in rows:
            write(row)


def _upsert_merchants_pg(cur, orders: list[OrderRows], as_of: datetime) -> None:
    names: dict[str, tuple[datetime, str | None]] = {}
    for o in orders:
        mid, name = o.order[1], o.order[2]
        prev = names.get(mid)
        if prev is None or (name is not None and (prev[1] is None or o.updated_at > prev[0])):
            names[mid] = (o.updated_at, name)
    rows = [{"id": m, "name": names[m][1], "key": shard_key(m)} for m in sorted(names)]
    cur.execute(_MERCHANTS_PG, {"merchants": orjson.dumps(rows).decode(), "now": as_of})
