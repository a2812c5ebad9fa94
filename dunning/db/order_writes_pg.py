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

from dunning.db.copy_rows import ORDER_COPY_COLUMNS, CopyRows, encode
from dunning.models.record_rows import (
    BUYER_COLUMNS,
    INSTALLMENT_COLUMNS,
    TRANSACTION_COLUMNS,
    OrderRows,
)
from dunning.models.sharding import shard_key

_STAGE_DDL = """
CREATE TEMP TABLE IF NOT EXISTS sync_stage_orders (
    order_id text, merchant_id text, order_date timestamptz,
    updated_at timestamptz, status text, currency text, total_amount numeric(14,2),
    product_id text, product_name text, payment_plan text, payment_method text,
    source text, synced_at timestamptz
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

_ORDER_SET = ", ".join(f"{c} = EXCLUDED.{c}" for c in ORDER_COPY_COLUMNS[1:])
_ORDER_COLS = ", ".join(ORDER_COPY_COLUMNS)

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


def _merge_sql(table: str, columns: tuple[str, ...], key: tuple[str, ...], purgeable: bool) -> str:
    """Bring the rows of `table` of the updated orders in line with their staged snapshot in
    one statement: the current rows are read once (`cur`), then the rows the snapshot no
    longer has are deleted, those that differ updated, the new ones added. Equal rows are
    not touched (an upsert locks every conflicting row: a dirtied page, and after a
    checkpoint a full page image in the WAL, for each of them). Reading the rows once for
    all three, instead of once per write, saved about a quarter of the merge time.
    `purgeable`: a purged row stays as it is (a buyer: a newer snapshot does not bring the
    data back) and is never deleted. The order rows are locked by this transaction, so no
    other sync writes rows of these orders meanwhile."""
    values = [c for c in columns if c not in key]
    cols = ", ".join(columns)

    def match(a: str, b: str) -> str:
        return " AND ".join(f"{a}.{c} = {b}.{c}" for c in key)

    def row(alias: str) -> str:
        return ", ".join(f"{alias}.{c}" for c in values)

    extra = ", t.anonymised_at" if purgeable else ""
    guard = "c.anonymised_at IS NULL AND " if purgeable else ""
    gone = (
        ""
        if purgeable
        else f"""gone AS (
  DELETE FROM {table} t USING cur c
  WHERE {match("t", "c")}
    AND NOT EXISTS (SELECT 1 FROM sync_stage_{table} s WHERE {match("s", "c")})
), """
    )
    return f"""
WITH cur AS MATERIALIZED (
  SELECT {", ".join(f"t.{c}" for c in columns)}{extra} FROM {table} t
  WHERE t.order_id = ANY({_IDS})
), {gone}changed AS (
  UPDATE {table} t SET ({", ".join(values)}) = ROW({row("s")})
  FROM cur c JOIN sync_stage_{table} s ON {match("s", "c")}
  WHERE {match("t", "c")} AND {guard}ROW({row("c")}) IS DISTINCT FROM ROW({row("s")})
)
INSERT INTO {table} ({cols}) SELECT {", ".join(f"s.{c}" for c in columns)}
FROM sync_stage_{table} s WHERE NOT EXISTS (SELECT 1 FROM cur c WHERE {match("c", "s")})
ORDER BY {", ".join(f"s.{c}" for c in key)}
"""


_MERGE_CHILDREN_PG = (
    _merge_sql("installments", INSTALLMENT_COLUMNS, ("order_id", "number"), False),
    _merge_sql("transactions", TRANSACTION_COLUMNS, ("order_id", "transaction_id"), False),
    _merge_sql("buyers", BUYER_COLUMNS, ("order_id",), True),
)
_ORDERS_PG = f"""
INSERT INTO orders AS o ({_ORDER_COLS})
SELECT {_ORDER_COLS} FROM sync_stage_orders ORDER BY order_id
ON CONFLICT (order_id) DO UPDATE SET {_ORDER_SET}
WHERE o.updated_at < EXCLUDED.updated_at
RETURNING o.order_id, (o.xmax = 0) AS inserted
"""


def write_orders_pg(
    conn: Connection, source: str, orders: CopyRows | list[OrderRows], as_of: datetime
) -> tuple[int, int]:
    """Fresh orders are COPYed straight into `orders`; newer snapshots of known orders go
    through the staging table and one guarded upsert. Existing rows of the batch are
    locked first (FOR UPDATE), so the decision holds until commit; should another sync
    insert one of the fresh ids meanwhile, the COPY fails inside a savepoint and the
    whole batch takes the guarded upsert instead. `orders` come encoded for COPY (the
    sync's reader does that) or as rows.

    After a batch of fresh orders only (a first load), the next batch is COPYed whole
    without looking its ids up first; a known id fails that COPY inside a savepoint, and
    the batch takes the way above. The lookups cost a first load of a million orders
    0.8 s of the server's time."""
    rows = orders if isinstance(orders, CopyRows) else encode(orders, source, as_of)
    dbapi = conn.connection.driver_connection
    cur = dbapi.cursor()
    try:
        # A crash of the server may lose the newest batches, but never half of one: the
        # watermark commits with its data. Not waiting for the WAL flush saves a fsync.
        cur.execute("SET LOCAL synchronous_commit = off")
        ids = rows.ids
        hint = (conn.engine.url, source)
        if _FRESH_BEFORE.get(hint) and _copied_as_fresh(cur, rows, as_of):
            return len(ids), 0
        cur.execute(
            f"SELECT order_id, updated_at FROM orders WHERE order_id = ANY({_IDS}) "
            "ORDER BY order_id FOR UPDATE",
            {"ids": _json_list(ids)},
        )
        existing = dict(cur.fetchall())
        _FRESH_BEFORE[hint] = not existing
        if not existing:
            fresh: list[int] | None = None  # all of them
            newer: list[int] = []
        else:
            fresh = [i for i, oid in enumerate(ids) if oid not in existing]
            newer = [
                i
                for i, oid in enumerate(ids)
                if oid in existing and existing[oid] < datetime.fromisoformat(rows.updated[i])
            ]
            if not fresh and not newer:
                return 0, 0
        _upsert_merchants_pg(cur, rows, _picked(fresh, newer, len(ids)), as_of)
        inserted: list[int] = []
        if fresh is None or fresh:
            cur.execute("SAVEPOINT sync_fresh")
            try:
                _copy(cur, "orders", ORDER_COPY_COLUMNS, rows.text("orders", fresh))
                cur.execute("RELEASE SAVEPOINT sync_fresh")
                inserted = list(range(len(ids))) if fresh is None else fresh
            except Exception as exc:  # a concurrent sync inserted one of them
                import psycopg

                if not isinstance(exc, psycopg.errors.UniqueViolation):
                    raise
                cur.execute("ROLLBACK TO SAVEPOINT sync_fresh")
                newer = sorted((list(range(len(ids))) if fresh is None else fresh) + newer)
        updated: list[int] = []
        if newer:
            cur.execute(_STAGE_DDL)
            _copy(cur, "sync_stage_orders", ORDER_COPY_COLUMNS, rows.text("orders", newer))
            cur.execute(_ORDERS_PG)
            applied = dict(cur.fetchall())
            cur.execute("TRUNCATE sync_stage_orders")
            inserted += [i for i in newer if applied.get(ids[i]) is True]
            updated = [i for i in newer if applied.get(ids[i]) is False]
            if updated:
                _merge_children_pg(cur, rows, updated)
        if len(inserted) == len(ids):
            _copy_children(cur, rows, None, "")
        elif inserted:
            _copy_children(cur, rows, sorted(inserted), "")
        return len(inserted), len(updated)
    finally:
        cur.close()


# (database, source) -> whether the source's last batch looked up held fresh orders only: a
# hint (when wrong, it costs one COPY that fails)
_FRESH_BEFORE: dict[tuple, bool] = {}


def _copied_as_fresh(cur, rows: CopyRows, as_of: datetime) -> bool:
    """COPY the whole batch as fresh orders; False (and nothing written) if one is known."""
    import psycopg

    cur.execute("SAVEPOINT sync_all_fresh")
    try:
        _upsert_merchants_pg(cur, rows, None, as_of)
        _copy(cur, "orders", ORDER_COPY_COLUMNS, rows.text("orders"))
    except psycopg.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT sync_all_fresh")
        return False
    cur.execute("RELEASE SAVEPOINT sync_all_fresh")
    _copy_children(cur, rows, None, "")
    return True


def _picked(fresh: list[int] | None, newer: list[int], n: int) -> list[int] | None:
    """The orders written: all of them (None), or the fresh and the newer ones."""
    if fresh is None or len(fresh) + len(newer) == n:
        return None
    return sorted(fresh + newer)


def _merge_children_pg(cur, rows: CopyRows, updated: list[int]) -> None:
    """Buyer, installments and transactions of orders that got a newer snapshot: staged,
    then only what differs is written. A new snapshot mostly adds a payment; rewriting
    every child row cost twice the time (index entries and WAL for unchanged rows)."""
    cur.execute(_CHILD_STAGE_DDL)
    _copy_children(cur, rows, updated, "sync_stage_")
    ids = _json_list([rows.ids[i] for i in updated])
    for statement in _MERGE_CHILDREN_PG:
        cur.execute(statement, {"ids": ids})


def _copy_children(cur, rows: CopyRows, picked: list[int] | None, prefix: str) -> None:
    """COPY the buyers, installments and transactions of the orders at `picked` (None: all)
    into `prefix` + table."""
    _copy(cur, f"{prefix}buyers", BUYER_COLUMNS, rows.text("buyers", picked))
    _copy(cur, f"{prefix}installments", INSTALLMENT_COLUMNS, rows.text("installments", picked))
    _copy(cur, f"{prefix}transactions", TRANSACTION_COLUMNS, rows.text("transactions", picked))


def _copy(cur, table: str, columns: Iterable[str], text: bytes) -> None:
    if not text:
        return
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        copy.write(text)


def _upsert_merchants_pg(cur, rows: CopyRows, picked: list[int] | None, as_of: datetime) -> None:
    """The merchants of the orders written, each with the name of its newest snapshot that
    has one."""
    names: dict[str, tuple[str, str | None]] = {}
    mids, given, stamps = rows.merchant_ids, rows.merchant_names, rows.updated
    for i in range(len(mids)) if picked is None else picked:
        mid, name = mids[i], given[i]
        prev = names.get(mid)
        if prev is None or (name is not None and (prev[1] is None or stamps[i] > prev[0])):
            names[mid] = (stamps[i], name)
    merchants = [{"id": m, "name": names[m][1], "key": shard_key(m)} for m in sorted(names)]
    cur.execute(_MERCHANTS_PG, {"merchants": orjson.dumps(merchants).decode(), "now": as_of})
