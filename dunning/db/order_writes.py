"""Validated orders into the tables: merchants, orders, buyers, installments, transactions.

Newest `updated_at` wins: an order is written only if it is new or its snapshot is newer
than the stored one, and only the orders written get their children (buyer, installments,
transactions) replaced, so an older snapshot never overwrites a newer one, even with two
syncs running at once.

PostgreSQL COPYs (`dunning.db.order_writes_pg`); SQLite takes the same decisions with
executemany (below).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import Connection, Engine, delete, insert, select

from dunning.db.dialect import insert_for, is_postgres
from dunning.db.order_writes_pg import write_orders_pg
from dunning.models.record_rows import BUYER_COLUMNS, OrderRows
from dunning.models.schema import Buyer, Installment, Merchant, Order, Transaction
from dunning.models.sharding import shard_key


def write_orders(
    conn: Connection, source: str, orders: list[OrderRows], as_of: datetime
) -> tuple[int, int]:
    """Write the orders of one batch inside the caller's transaction, each with its
    children; return how many were inserted and how many updated (the rest were no newer
    than what is stored)."""
    if is_postgres(conn):
        return write_orders_pg(conn, source, orders, as_of)
    return _write_orders_sqlite(conn, source, orders, as_of)


def takes_copy_text(bind: Engine | Connection) -> bool:
    """Whether orders go in by COPY, so that a batch may come encoded for it
    (`dunning.db.copy_rows`)."""
    return is_postgres(bind)


# --- SQLite: the same decisions with executemany -----------------------------------------

_dt = datetime.fromisoformat
_d = date.fromisoformat


def _utc(text_value: str) -> datetime:
    return _dt(text_value).astimezone(UTC)


def _write_orders_sqlite(
    conn: Connection, source: str, orders: list[OrderRows], as_of: datetime
) -> tuple[int, int]:
    # Merchants first: the write takes SQLite's write lock, so what we read next stays true.
    names: dict[str, tuple[datetime, str | None]] = {}
    for o in orders:
        mid, name = o.order[1], o.order[2]
        prev = names.get(mid)
        if prev is None or (name is not None and (prev[1] is None or o.updated_at > prev[0])):
            names[mid] = (o.updated_at, name)
    m = insert_for(conn, Merchant)
    conn.execute(
        m.on_conflict_do_update(
            index_elements=["merchant_id"],
            set_={"name": m.excluded.name, "updated_at": m.excluded.updated_at},
            where=m.excluded.name.is_not(None) & (Merchant.name.is_distinct_from(m.excluded.name)),
        ),
        [
            {
                "merchant_id": mid,
                "name": name,
                "shard_key": shard_key(mid),
                "created_at": as_of,
                "updated_at": as_of,
            }
            for mid, (_, name) in sorted(names.items())
        ],
    )
    ids = [o.order[0] for o in orders]
    existing: dict[str, datetime] = {}
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        existing.update(
            conn.execute(
                select(Order.order_id, Order.updated_at).where(Order.order_id.in_(chunk))
            ).all()
        )
    fresh = [o for o in orders if o.order[0] not in existing]
    newer = [o for o in orders if o.order[0] in existing and existing[o.order[0]] < o.updated_at]
    changed = fresh + newer
    if not changed:
        return 0, 0
    newer_ids = [o.order[0] for o in newer]
    anonymised: set[str] = set()
    for start in range(0, len(newer_ids), 900):
        chunk = newer_ids[start : start + 900]
        anonymised.update(
            conn.scalars(
                select(Buyer.order_id).where(
                    Buyer.order_id.in_(chunk), Buyer.anonymised_at.is_not(None)
                )
            )
        )
        conn.execute(delete(Buyer).where(Buyer.order_id.in_(chunk), Buyer.anonymised_at.is_(None)))
        for table in (Installment, Transaction):
            conn.execute(delete(table).where(table.order_id.in_(chunk)))
    order_rows = [
        {
            "order_id": r[0],
            "merchant_id": r[1],
            "order_date": _utc(r[3]),
            "updated_at": o.updated_at,
            "status": r[5],
            "currency": r[6],
            "total_amount": Decimal(r[7]),
            "product_id": r[8],
            "product_name": r[9],
            "payment_plan": r[10],
            "payment_method": r[11],
            "source": source,
            "synced_at": as_of,
        }
        for o in changed
        for r in (o.order,)
    ]
    ins = insert_for(conn, Order)
    conn.execute(
        ins.on_conflict_do_update(
            index_elements=["order_id"],
            set_={c: ins.excluded[c] for c in order_rows[0] if c != "order_id"},
        ),
        order_rows,
    )
    buyers = [
        dict(zip(BUYER_COLUMNS, o.buyer, strict=True))
        for o in changed
        if o.order[0] not in anonymised  # a purged buyer stays purged
    ]
    if buyers:
        conn.execute(insert(Buyer), buyers)
    inst = [
        {"order_id": r[0], "number": r[1], "due_date": _d(r[2]), "amount": Decimal(r[3])}
        for o in changed
        for r in o.installments
    ]
    if inst:
        conn.execute(insert(Installment), inst)
    txs = [
        {
            "order_id": r[0],
            "transaction_id": r[1],
            "type": r[2],
            "amount": Decimal(r[3]),
            "processed_at": _utc(r[4]),
            "installment_number": r[5],
            "reverses_transaction_id": r[6],
            "fee": None if r[7] is None else Decimal(r[7]),
            "reason_code": r[8],
        }
        for o in changed
        for r in o.transactions
    ]
    if txs:
        conn.execute(insert(Transaction), txs)
    return len(fresh), len(newer)
