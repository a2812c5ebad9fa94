"""Validated batches of order snapshots into the tables: merchants, orders, buyers,
installments, transactions; broken records into the quarantine.

One batch is one transaction. Newest `updated_at` wins: the order row is upserted with
`WHERE orders.updated_at < new.updated_at`, and only the orders that upsert actually
wrote get their children (buyer, installments, transactions) replaced, so an older
snapshot never overwrites a newer one, even with two syncs running at once.

PostgreSQL: orders are COPYed into a temporary staging table and upserted from there in
one statement (RETURNING tells inserted from updated); children are COPYed straight into
their tables. SQLite: the same decisions with executemany.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from dunning.crashpoints import crashpoint
from dunning.models.record_fast_path import to_rows
from dunning.models.record_rows import (
    BUYER_COLUMNS,
    INSTALLMENT_COLUMNS,
    ORDER_COLUMNS,
    TRANSACTION_COLUMNS,
    OrderRows,
)
from dunning.models.records import EARLIEST, RecordError, latest_moment
from dunning.models.schema import (
    Buyer,
    Installment,
    Merchant,
    Order,
    QuarantinedRecord,
    SyncStamp,
    SyncWatermark,
    Transaction,
)
from dunning.models.sharding import shard_key
from dunning.tasks.source import Batch


@dataclass
class SyncCounts:
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0  # same or older snapshot than the one stored (or superseded in the batch)
    quarantined: int = 0
    skipped: int = 0  # older than the watermark: not looked at again
    resolved: int = 0  # quarantine entries resolved by a valid snapshot

    def add(self, other: SyncCounts) -> SyncCounts:
        for key, value in asdict(other).items():
            setattr(self, key, getattr(self, key) + value)
        return self

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True)
class BadRecord:
    position: str
    raw: bytes
    order_id: str | None
    record_updated_at: datetime | None
    field: str
    reason: str


@dataclass
class PreparedBatch:
    orders: list[OrderRows] = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)
    read: int = 0
    skipped: int = 0
    superseded: int = 0
    max_updated_at: datetime | None = None


MAX_STORABLE = datetime(9999, 12, 30, tzinfo=UTC)


def _peek_updated(value: Any) -> datetime | None:
    if type(value) is not dict:
        return None
    raw = value.get("updated_at")
    if type(raw) is not str or len(raw) > 40:
        return None
    try:
        moment = datetime.fromisoformat(raw)
        if moment.tzinfo is None or not EARLIEST <= moment <= MAX_STORABLE:
            return None  # 9999-12-31T23:59:59-12:00 is past what a UTC column can hold
    except ValueError:
        return None
    return moment


def _peek_order_id(value: Any) -> str | None:
    if type(value) is not dict:
        return None
    oid = value.get("order_id")
    if type(oid) is str and 0 < len(oid) <= 64 and "\x00" not in oid:
        return oid
    return None


def prepare_batch(
    items: Iterable[Any],
    since: datetime | None,
    shard: int | None = None,
    shards: int = 1,
    as_of: datetime | None = None,
) -> PreparedBatch:
    """Validate and de-duplicate one batch (pure CPU, no database).

    `since`: records older than it are skipped unread (the watermark; equal ones are read).
    Two snapshots of one order in a batch: the newer wins, the first on a tie.
    With `shard`/`shards`, only records of that shard's merchants count (a record without
    a readable merchant id belongs to shard 0, so exactly one shard quarantines it).
    `as_of`: the run's moment; stamps more than a day after it are refused.
    """
    latest = latest_moment(as_of)
    out = PreparedBatch()
    best: dict[str, OrderRows] = {}
    bad = out.bad
    top: datetime | None = None
    sharded = shard is not None and shards > 1
    for item in items:
        value = item.value
        if sharded:
            mid = value.get("merchant_id") if type(value) is dict else None
            owner = shard_key(mid) % shards if type(mid) is str else 0
            if owner != shard:
                continue
        out.read += 1
        if isinstance(value, RecordError):
            bad.append(
                BadRecord(item.position, item.raw_bytes(), None, None, value.field, value.reason)
            )
            continue
        if since is not None:
            moment = _peek_updated(value)
            if moment is not None and moment < since:
                out.skipped += 1
                continue
        raw = item.raw
        # JSON can carry a NUL only as the escape \u0000: a line without it has none.
        rows = to_rows(value, raw is not None and b"\\u0000" not in raw, latest)
        if isinstance(rows, RecordError):
            # A broken record does not move the watermark: were its stamp bogus (far in
            # the future), it would hide every later change. It is simply read again.
            moment = _peek_updated(value)
            bad.append(
                BadRecord(
                    item.position,
                    item.raw_bytes(),
                    _peek_order_id(value),
                    moment,
                    rows.field,
                    rows.reason,
                )
            )
            continue
        moment = rows.updated_at
        if top is None or moment > top:
            top = moment
        oid = rows.order[0]
        prev = best.get(oid)
        if prev is None:
            best[oid] = rows
        else:
            out.superseded += 1
            if moment > prev.updated_at:
                best[oid] = rows
    out.orders = list(best.values())
    out.max_updated_at = top
    return out


# --- writing -----------------------------------------------------------------------------


def _raw_text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="backslashreplace").replace("\x00", "\\u0000")


def _clean(text_value: str) -> str:
    """PostgreSQL text cannot hold NUL; a reason may quote the offending value."""
    return text_value.replace("\x00", "\\u0000")


def _quarantine_rows(source: str, bad: list[BadRecord], as_of: datetime) -> list[dict]:
    seen: set[str] = set()
    rows = []
    for b in bad:
        digest = hashlib.sha256(b.raw).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        rows.append(
            {
                "source": source,
                "position": _clean(b.position)[:64],
                "order_id": b.order_id,
                "raw": _raw_text(b.raw),
                "field": _clean(b.field)[:200],
                "reason": _clean(b.reason),
                "received_at": as_of,
                "resolved_at": None,
                "record_updated_at": b.record_updated_at,
                "digest": digest,
            }
        )
    return rows


def _forget_purged(conn: Connection, qrows: list[dict]) -> None:
    """A broken snapshot of a purged order keeps its entry, not its payload: the purge
    removed that buyer's data and a later file must not bring it back (dunning purge)."""
    ids = list({r["order_id"] for r in qrows if r["order_id"]})
    purged: set[str] = set()
    for start in range(0, len(ids), 900):
        purged.update(
            conn.scalars(
                select(Buyer.order_id).where(
                    Buyer.order_id.in_(ids[start : start + 900]), Buyer.anonymised_at.is_not(None)
                )
            )
        )
    for r in qrows:
        if r["order_id"] in purged:
            r["raw"] = "{}"


def write_batch(
    conn: Connection,
    source: str,
    batch: PreparedBatch,
    as_of: datetime,
    *,
    advance_watermark: bool,
    key: str | None = None,
) -> SyncCounts:
    """Write one prepared batch inside the caller's transaction; return its counts.

    `source` names the source in orders and the quarantine; `key` (default: `source`) is
    the watermark's row, which differs per shard when shards read one source.
    """
    counts = SyncCounts(
        read=batch.read,
        quarantined=len(batch.bad),
        skipped=batch.skipped,
        unchanged=batch.superseded,
    )
    if batch.orders:
        if conn.dialect.name == "postgresql":
            inserted, updated = _write_orders_pg(conn, source, batch.orders, as_of)
        else:
            inserted, updated = _write_orders_sqlite(conn, source, batch.orders, as_of)
        counts.inserted = inserted
        counts.updated = updated
        counts.unchanged += len(batch.orders) - inserted - updated
    qrows = _quarantine_rows(source, batch.bad, as_of)
    if qrows:
        _forget_purged(conn, qrows)
        ins = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(QuarantinedRecord)
        conn.execute(ins.on_conflict_do_nothing(index_elements=["source", "digest"]), qrows)
    counts.resolved = _resolve_quarantine(conn, batch, as_of)
    if advance_watermark and batch.max_updated_at is not None:
        set_watermark(conn, key or source, batch.max_updated_at, as_of)
    if counts.inserted or counts.updated:  # last: its row lock is held only to the commit
        count_stamp(conn, as_of, counts.inserted + counts.updated)
    return counts


def count_stamp(conn: Connection, as_of: datetime, writes: int) -> None:
    """Add this batch's order writes to its stamp's count (dunning.tasks.synced_since)."""
    ins = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(SyncStamp)
    ins = ins.values(stamp=as_of, writes=writes)
    conn.execute(
        ins.on_conflict_do_update(
            index_elements=[SyncStamp.stamp], set_={"writes": SyncStamp.writes + writes}
        )
    )


def state_key(source: str, shard: int | None, shards: int) -> str:
    """The watermark row of a source, or of one shard of it."""
    if shard is None or shards <= 1:
        return source
    return f"{source}#shard{shard}of{shards}"


def set_watermark(conn: Connection, source: str, moment: datetime, as_of: datetime) -> None:
    """Raise the source's watermark to `moment` (never lower it, never past `as_of`: a
    snapshot stamped in the future is read again until its time has come, instead of
    hiding the changes stamped before it)."""
    moment = min(moment, as_of)
    current = conn.scalar(
        select(SyncWatermark.watermark).where(SyncWatermark.source == source).with_for_update()
        if conn.dialect.name == "postgresql"
        else select(SyncWatermark.watermark).where(SyncWatermark.source == source)
    )
    if current is not None and current >= moment:
        return
    ins = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(SyncWatermark)
    conn.execute(
        ins.values(
            source=source, watermark=moment, cursor=None, updated_at=as_of
        ).on_conflict_do_update(
            index_elements=["source"],
            set_={"watermark": moment, "updated_at": as_of},
        )
    )


def read_watermark(conn: Connection, source: str) -> datetime | None:
    return conn.scalar(select(SyncWatermark.watermark).where(SyncWatermark.source == source))


def _resolve_quarantine(conn: Connection, batch: PreparedBatch, as_of: datetime) -> int:
    """Mark entries resolved whose order now holds a valid snapshot at least as new."""
    ids = [o.order[0] for o in batch.orders] + [b.order_id for b in batch.bad if b.order_id]
    if not ids:
        return 0
    if not batch.bad and not conn.scalar(
        select(QuarantinedRecord.id)
        .where(QuarantinedRecord.resolved_at.is_(None), QuarantinedRecord.order_id.is_not(None))
        .limit(1)
    ):
        return 0
    q = QuarantinedRecord
    newest = select(Order.updated_at).where(Order.order_id == q.order_id).scalar_subquery()
    total = 0
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        result = conn.execute(
            update(q)
            .where(
                q.resolved_at.is_(None),
                q.order_id.in_(chunk),
                newest.is_not(None),
                (q.record_updated_at.is_(None)) | (q.record_updated_at <= newest),
            )
            .values(resolved_at=as_of)
            .execution_options(synchronize_session=False)
        )
        total += result.rowcount or 0
    return total


# --- PostgreSQL: COPY and one upsert -----------------------------------------------------

_STAGE_DDL = """
CREATE TEMP TABLE IF NOT EXISTS sync_stage_orders (
    order_id text, merchant_id text, merchant_name text, order_date timestamptz,
    updated_at timestamptz, status text, currency text, total_amount numeric(14,2),
    product_id text, product_name text, payment_plan text, payment_method text
) ON COMMIT DELETE ROWS
"""

_MERCHANTS_PG = """
INSERT INTO merchants AS m (merchant_id, name, shard_key, created_at, updated_at)
SELECT id, name, key, %(now)s, %(now)s
FROM unnest(%(ids)s::text[], %(names)s::text[], %(keys)s::int[]) AS u(id, name, key)
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


def _merge_sql(table: str, columns: tuple[str, ...], key: tuple[str, ...], guard: str) -> str:
    """Insert the staged rows of `table`; a row that exists is updated only if it differs."""
    values = [c for c in columns if c not in key]
    cols = ", ".join(columns)
    mine = ", ".join(f"t.{c}" for c in values)
    theirs = ", ".join(f"EXCLUDED.{c}" for c in values)
    return (
        f"INSERT INTO {table} AS t ({cols}) SELECT {cols} FROM sync_stage_{table} "
        f"ORDER BY {', '.join(key)} "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET ({', '.join(values)}) = ROW({theirs}) "
        f"WHERE {guard}ROW({mine}) IS DISTINCT FROM ROW({theirs})"
    )


def _gone_sql(table: str, key: tuple[str, ...]) -> str:
    """Delete the rows of the updated orders that their newer snapshot no longer has."""
    match = " AND ".join(f"s.{c} = t.{c}" for c in key)
    return (
        f"DELETE FROM {table} t WHERE t.order_id = ANY(%(ids)s) AND NOT EXISTS "
        f"(SELECT 1 FROM sync_stage_{table} s WHERE {match})"
    )


_MERGE_CHILDREN_PG = (
    _gone_sql("installments", ("order_id", "number")),
    _merge_sql("installments", INSTALLMENT_COLUMNS, ("order_id", "number"), ""),
    _gone_sql("transactions", ("order_id", "transaction_id")),
    _merge_sql("transactions", TRANSACTION_COLUMNS, ("order_id", "transaction_id"), ""),
    # A purged buyer stays purged: a newer snapshot does not bring the data back.
    _merge_sql("buyers", BUYER_COLUMNS, ("order_id",), "t.anonymised_at IS NULL AND "),
)
_ORDERS_PG = f"""
INSERT INTO orders AS o ({_ORDER_COLS}, source, synced_at)
SELECT {_ORDER_COLS}, %(source)s, %(now)s FROM sync_stage_orders ORDER BY order_id
ON CONFLICT (order_id) DO UPDATE SET {_ORDER_SET}, source = EXCLUDED.source,
    synced_at = EXCLUDED.synced_at
WHERE o.updated_at < EXCLUDED.updated_at
RETURNING o.order_id, (o.xmax = 0) AS inserted
"""


def _write_orders_pg(
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
            "SELECT order_id, updated_at FROM orders WHERE order_id = ANY(%s) "
            "ORDER BY order_id FOR UPDATE",
            (ids,),
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
        cur.execute(statement, {"ids": ids} if "%(ids)s" in statement else None)


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
    mids = sorted(names)
    cur.execute(
        _MERCHANTS_PG,
        {
            "ids": mids,
            "names": [names[m][1] for m in mids],
            "keys": [shard_key(m) for m in mids],
            "now": as_of,
        },
    )


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
    m = sqlite_insert(Merchant)
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
    ins = sqlite_insert(Order)
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


# --- one chunk: read, validate and write a few batches -----------------------------------


@dataclass
class ChunkResult:
    counts: SyncCounts
    next_position: str
    done: bool
    max_updated_at: datetime | None
    bytes_read: int | None = None
    bytes_total: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts.as_dict(),
            "next_position": self.next_position,
            "done": self.done,
            "max_updated_at": self.max_updated_at.isoformat() if self.max_updated_at else None,
            "bytes_read": self.bytes_read,
            "bytes_total": self.bytes_total,
        }


_STOP = object()


@contextlib.contextmanager
def gc_paused():
    """Batches are trees of dicts and tuples without cycles: reference counting frees them.
    The cyclic collector, triggered by every few hundred new containers, would scan the
    whole live batch again and again (measured: parsing 3x slower)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def sync_chunk(
    database_url: str,
    source_url: str,
    *,
    position: str,
    since: datetime | None,
    as_of: datetime,
    token: Any = None,
    timeout: float = 10.0,
    batch_size: int = 5000,
    max_batches: int = 10,
    shard: int | None = None,
    shards: int = 1,
    on_batch: Any = None,
    deadline: float | None = None,
) -> ChunkResult:
    """Read up to `max_batches` batches from `position`, validate and write each.
    `deadline`: the `time.time()` by which the whole read (every chunk) must end.

    A reader thread reads and validates the next batch while this one is written (the
    database works on the other core). Each batch commits on its own; for a source that
    delivers oldest change first the watermark moves in the same transaction.
    """
    with gc_paused():
        return _sync_chunk(
            database_url,
            source_url,
            position=position,
            since=since,
            as_of=as_of,
            token=token,
            timeout=timeout,
            batch_size=batch_size,
            max_batches=max_batches,
            shard=shard,
            shards=shards,
            on_batch=on_batch,
            deadline=deadline,
        )


def _sync_chunk(
    database_url: str,
    source_url: str,
    *,
    position: str,
    since: datetime | None,
    as_of: datetime,
    token: Any,
    timeout: float,
    batch_size: int,
    max_batches: int,
    shard: int | None,
    shards: int,
    on_batch: Any,
    deadline: float | None,
) -> ChunkResult:
    from dunning.db import get_engine
    from dunning.tasks.source import open_source

    engine = get_engine(database_url)
    src = open_source(source_url, token, timeout, deadline)
    name = state_key(src.name, shard, shards)
    total = SyncCounts()
    top: datetime | None = None
    handoff: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def produce() -> None:
        gen = src.batches(position, since, batch_size)
        try:
            for n, b in enumerate(gen, start=1):
                if stop.is_set():
                    break
                handoff.put((b, prepare_batch(b.items, since, shard, shards, as_of)))
                if b.done or n >= max_batches:
                    break
        except BaseException as exc:  # handed to the writer, raised there
            handoff.put(exc)
            return
        finally:
            gen.close()
        handoff.put(_STOP)

    reader = threading.Thread(target=produce, name="sync-reader", daemon=True)
    reader.start()
    last = None
    ok = False
    try:
        while True:
            got = handoff.get()
            if got is _STOP:
                break
            if isinstance(got, BaseException):
                raise got
            b, prepared = got
            with engine.begin() as conn:
                counts = write_batch(
                    conn, src.name, prepared, as_of, advance_watermark=src.ordered, key=name
                )
            crashpoint("sync.batch")  # issue 9: crash tests kill here (off unless set)
            total.add(counts)
            if prepared.max_updated_at is not None and (
                top is None or prepared.max_updated_at > top
            ):
                top = prepared.max_updated_at
            last = b
            if on_batch is not None:
                on_batch(counts, b)
        ok = True
    finally:
        stop.set()
        while reader.is_alive():
            with contextlib.suppress(queue.Empty):
                handoff.get(timeout=0.1)
        reader.join()
        if ok and last is not None and not last.done and not src.ordered:
            pass  # a file reader stays open for the next chunk (see source.py)
        else:
            src.close()
    if last is None:
        return ChunkResult(total, position, True, top)
    return ChunkResult(total, last.next_position, last.done, top, last.bytes_read, last.bytes_total)


def count_rows(conn: Connection) -> dict[str, int]:
    """Rows per synced table (tests and the CLI summary)."""
    return {
        t.__tablename__: conn.scalar(select(func.count()).select_from(t)) or 0
        for t in (Merchant, Order, Buyer, Installment, Transaction, QuarantinedRecord)
    }


__all__ = [
    "BadRecord",
    "ChunkResult",
    "PreparedBatch",
    "SyncCounts",
    "count_rows",
    "prepare_batch",
    "read_watermark",
    "set_watermark",
    "sync_chunk",
    "write_batch",
]


# --- a whole sync, without Prefect (the CLI and tests call this; the flow wraps it) ------


@dataclass
class SyncPlan:
    source: str  # the source's stable name
    key: str  # its watermark row (per shard when sharded)
    since: datetime | None  # read snapshots at or after this; None = everything
    watermark_before: datetime | None
    ordered: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "key": self.key,
            "since": self.since.isoformat() if self.since else None,
            "watermark_before": self.watermark_before.isoformat()
            if self.watermark_before
            else None,
            "ordered": self.ordered,
        }


@dataclass
class SyncResult:
    source: str
    counts: SyncCounts
    watermark_before: datetime | None
    watermark_after: datetime | None
    seconds: float
    batches: int
    chunks: int
    full: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "counts": self.counts.as_dict(),
            "watermark_before": _iso_or_none(self.watermark_before),
            "watermark_after": _iso_or_none(self.watermark_after),
            "seconds": round(self.seconds, 3),
            "batches": self.batches,
            "chunks": self.chunks,
            "full": self.full,
        }


def _iso_or_none(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def plan_sync(
    database_url: str, source_url: str, *, full: bool, shard: int | None, shards: int
) -> SyncPlan:
    """Where this run starts: the committed watermark, unless `full`."""
    from dunning.db import ensure_schema, get_engine
    from dunning.models.sharding import check_shard
    from dunning.tasks.source import SourceError, allowed_file, file_path, source_name

    check_shard(shard, shards)
    ensure_schema(database_url)
    name = source_name(source_url)
    if len(name) > 290:
        raise SourceError(f"source name longer than 290 characters: {name[:60]}...")
    ordered = source_url.strip().startswith(("http://", "https://"))
    if not ordered and not allowed_file(source_url).is_file():
        raise SourceError(
            f"source file not found: {file_path(source_url)}; set DUNNING_SOURCE_URL or pass "
            "--source (`dunning generate --out FILE` writes a sample shop)"
        )
    key = state_key(name, shard, shards)
    with get_engine(database_url).connect() as conn:
        before = read_watermark(conn, key)
    return SyncPlan(name, key, None if full else before, before, ordered)


def finish_sync(
    database_url: str,
    plan: SyncPlan,
    run_max: datetime | None,
    counts: SyncCounts,
    as_of: datetime,
    seconds: float,
    full: bool,
) -> datetime | None:
    """After the last batch: a file's watermark moves now (a file may be unordered, so it
    moves only once every record of the run is committed); record the last data update."""
    from dunning.db import get_engine, refresh_statistics
    from dunning.models.schema import LastDataUpdate

    engine = get_engine(database_url)
    with engine.begin() as conn:
        if not plan.ordered and run_max is not None:
            set_watermark(conn, plan.key, run_max, as_of)
        after = read_watermark(conn, plan.key)
        details = {
            "counts": counts.as_dict(),
            "watermark": _iso_or_none(after),
            "seconds": round(seconds, 3),
            "full": full,
        }
        name = f"sync:{plan.key}"
        ins = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(LastDataUpdate)
        conn.execute(
            ins.values(name=name, updated_at=as_of, details=details).on_conflict_do_update(
                index_elements=["name"], set_={"updated_at": as_of, "details": details}
            )
        )
        refresh_statistics(conn, SYNCED_TABLES, counts.inserted)
    return after


SYNCED_TABLES = ("orders", "buyers", "installments", "transactions")  # orders first


def run_sync(
    database_url: str | None = None,
    source_url: str | None = None,
    *,
    token: Any = None,
    full: bool = False,
    as_of: datetime | None = None,
    batch_size: int | None = None,
    batches_per_chunk: int = 10,
    shard: int | None = None,
    shards: int = 1,
    on_progress: Any = None,
) -> SyncResult:
    """Sync one source to the end. `on_progress(counts, bytes_read, bytes_total)` after
    every batch. Token, URLs and sizes default to the settings; the settings' token only
    goes to the host of DUNNING_SOURCE_URL."""

    from dunning.config import get_settings
    from dunning.db import normalise_url
    from dunning.tasks.source import token_for

    settings = get_settings()
    url = normalise_url(database_url or settings.database_url)
    source_url = source_url or settings.source_url
    token = token if token is not None else token_for(source_url, settings)
    as_of = as_of or datetime.now(UTC)
    size = batch_size or settings.batch_size
    started = time.perf_counter()
    plan = plan_sync(url, source_url, full=full, shard=shard, shards=shards)
    deadline = time.time() + settings.read_deadline_seconds  # the read starts now
    total = SyncCounts()
    run_max: datetime | None = None
    position = ""
    batches = chunks = 0

    def progress(counts: SyncCounts, b: Batch) -> None:
        nonlocal batches
        batches += 1
        if on_progress is not None:
            on_progress(total_so_far(counts), b.bytes_read, b.bytes_total)

    running = SyncCounts()

    def total_so_far(counts: SyncCounts) -> SyncCounts:
        running.add(counts)
        return running

    while True:
        result = sync_chunk(
            url,
            source_url,
            position=position,
            since=plan.since,
            as_of=as_of,
            token=token,
            timeout=settings.http_timeout_seconds,
            batch_size=size,
            max_batches=batches_per_chunk,
            shard=shard,
            shards=shards,
            on_batch=progress,
            deadline=deadline,
        )
        chunks += 1
        total.add(result.counts)
        if result.max_updated_at is not None and (
            run_max is None or result.max_updated_at > run_max
        ):
            run_max = result.max_updated_at
        position = result.next_position
        if result.done:
            break
    seconds = time.perf_counter() - started
    after = finish_sync(url, plan, run_max, total, as_of, seconds, full)
    return SyncResult(
        plan.source, total, plan.watermark_before, after, seconds, batches, chunks, full
    )
