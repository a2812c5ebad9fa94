"""One batch of order snapshots, from what the source delivered to the tables: validated
and de-duplicated (`prepare_batch`, pure CPU), then written in the caller's transaction
(`write_batch`): orders with their children, broken records into the quarantine, the
watermark and the run's count of writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from sqlalchemy import Connection

from dunning.db.copy_rows import CopyRows, encode
from dunning.db.order_writes import write_orders
from dunning.db.quarantine import BadRecord, quarantine, resolve_quarantine
from dunning.db.sync_state import count_stamp, set_watermark
from dunning.models.record_check import to_rows
from dunning.models.record_rows import OrderRows
from dunning.models.record_rules import rows_or_broken_rule
from dunning.models.records import EARLIEST, OrderRecord, RecordError, latest_moment
from dunning.models.sharding import shard_key


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


@dataclass
class PreparedBatch:
    # the valid snapshots, one per order: rows, or encoded for PostgreSQL's COPY
    orders: list[OrderRows] | CopyRows = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)
    read: int = 0
    skipped: int = 0
    superseded: int = 0
    max_updated_at: datetime | None = None


MAX_STORABLE = datetime(9999, 12, 30, tzinfo=UTC)


def _peek(value: Any, name: str) -> Any:
    """A top-level field of a record not yet validated: typed (`OrderRecord`) or parsed."""
    if type(value) is OrderRecord:
        return getattr(value, name)
    return value.get(name) if type(value) is dict else None


def _peek_updated(value: Any) -> datetime | None:
    raw = _peek(value, "updated_at")
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
    oid = _peek(value, "order_id")
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
    read = superseded = 0
    sharded = shard is not None and shards > 1
    for item in items:
        value = item.value
        if sharded:
            mid = _peek(value, "merchant_id")
            owner = shard_key(mid) % shards if type(mid) is str else 0
            if owner != shard:
                continue
        read += 1
        if type(value) is RecordError:
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
        # JSON can carry a NUL only as the escape \u0000: a line without it has none (and
        # most lines have no backslash at all, which one memchr tells: an int needle, as a
        # bytes one takes the slower general search)
        nul_free = raw is not None and (_BACKSLASH not in raw or b"\\u0000" not in raw)
        if type(value) is OrderRecord:  # typed by the reader: straight to the rules' walk
            rows = rows_or_broken_rule(value, latest, nul_free)
        else:
            rows = to_rows(value, nul_free, latest)
        if type(rows) is RecordError:
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
        prev = best.setdefault(rows.order[0], rows)
        if prev is not rows:
            superseded += 1
            if rows.updated_at > prev.updated_at:
                best[rows.order[0]] = rows
    out.read, out.superseded = read, superseded
    out.orders = list(best.values())
    # the newest valid stamp: a superseded snapshot is never newer than the one kept
    out.max_updated_at = max(map(_updated_at, out.orders), default=None)
    return out


def encode_for_copy(batch: PreparedBatch, source: str, as_of: datetime) -> PreparedBatch:
    """The batch with its orders as COPY text (PostgreSQL): encoded by whoever prepared
    it, so the writer only passes bytes on."""
    if type(batch.orders) is list:
        batch.orders = encode(batch.orders, source, as_of)
    return batch


_updated_at = attrgetter("updated_at")
_BACKSLASH = ord("\\")


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
        inserted, updated = write_orders(conn, source, batch.orders, as_of)
        counts.inserted = inserted
        counts.updated = updated
        counts.unchanged += len(batch.orders) - inserted - updated
    quarantine(conn, source, batch.bad, as_of)
    ids = batch.orders.ids if type(batch.orders) is CopyRows else [o.order[0] for o in batch.orders]
    counts.resolved = resolve_quarantine(conn, ids, batch.bad, as_of)
    if advance_watermark and batch.max_updated_at is not None:
        set_watermark(conn, key or source, batch.max_updated_at, as_of)
    if counts.inserted or counts.updated:  # last: its row lock is held only to the commit
        count_stamp(conn, as_of, counts.inserted + counts.updated)
    return counts
