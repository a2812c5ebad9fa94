"""One batch of order snapshots, from what the source delivered to the tables: validated
and de-duplicated (`prepare_batch`, pure CPU), then written in the caller's transaction
(`write_batch`): orders with their children, broken records into the quarantine, the
watermark and the run's count of writes.
"""

from __future__ import annotations

import contextlib
import gc
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from dunning.crashpoints import crashpoint
from dunning.db.order_writes import write_orders
from dunning.db.quarantine import BadRecord, quarantine, resolve_quarantine
from dunning.db.sync_state import (
    count_stamp,
    read_watermark,
    set_watermark,
    state_key,
    upsert_last_data_update,
)
from dunning.models.record_fast_path import to_rows
from dunning.models.record_rows import OrderRows
from dunning.models.records import EARLIEST, RecordError, latest_moment
from dunning.models.schema import (
    Buyer,
    Installment,
    Merchant,
    Order,
    QuarantinedRecord,
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
    counts.resolved = resolve_quarantine(conn, batch.orders, batch.bad, as_of)
    if advance_watermark and batch.max_updated_at is not None:
        set_watermark(conn, key or source, batch.max_updated_at, as_of)
    if counts.inserted or counts.updated:  # last: its row lock is held only to the commit
        count_stamp(conn, as_of, counts.inserted + counts.updated)
    return counts


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
        upsert_last_data_update(conn, f"sync:{plan.key}", as_of, details)
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


def count_rows(conn: Connection) -> dict[str, int]:
    """Rows per synced table (tests and the CLI summary)."""
    return {
        t.__tablename__: conn.scalar(select(func.count()).select_from(t)) or 0
        for t in (Merchant, Order, Buyer, Installment, Transaction, QuarantinedRecord)
    }
