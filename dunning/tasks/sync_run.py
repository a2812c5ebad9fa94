"""A whole sync: where it starts (the watermark), its chunks to the end of the source, and
what it records when done. `read_to_the_end` is the one loop over the chunks: `run_sync`
(CLI, tests) drives it with plain calls, the flow (`dunning.flows.sync`) with task runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from dunning.db.bulk_fill import defer_indexes, restore_in_two_lanes, restore_indexes
from dunning.db.sync_state import (
    read_watermark,
    set_watermark,
    state_key,
    upsert_last_data_update,
)
from dunning.models.schema import (
    Buyer,
    Installment,
    Merchant,
    Order,
    QuarantinedRecord,
    Transaction,
)
from dunning.tasks.orders_sink import SyncCounts
from dunning.tasks.prefect_task import task
from dunning.tasks.source import Batch
from dunning.tasks.sync_chunks import ChunkResult, sync_chunk


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
    with get_engine(database_url).begin() as conn:
        before = read_watermark(conn, key)
        # Into empty tables: secondary indexes built once by finish_sync (bulk_fill).
        if not defer_indexes(conn, SYNCED_TABLES):
            restore_indexes(conn, SYNCED_TABLES)  # after a load that died midway
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
    """After the last batch: the indexes a first load left out are built and the statistics
    refreshed; a file's watermark moves now (a file may be unordered, so it moves only once
    every record of the run is committed); record the last data update."""
    from dunning.db import get_engine

    engine = get_engine(database_url)
    restore_in_two_lanes(engine, SYNCED_TABLES, counts.inserted)
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
    return after


SYNCED_TABLES = ("orders", "buyers", "installments", "transactions")  # orders first


def read_to_the_end(
    read_chunk: Callable[[str], ChunkResult],
) -> tuple[SyncCounts, datetime | None, int]:
    """Read chunk after chunk from the source's start until it says done: the counts, the
    newest `updated_at` seen, and how many chunks it took."""
    total = SyncCounts()
    run_max: datetime | None = None
    position, chunks = "", 0
    while True:
        chunk = read_chunk(position)
        chunks += 1
        total.add(chunk.counts)
        if chunk.max_updated_at is not None and (run_max is None or chunk.max_updated_at > run_max):
            run_max = chunk.max_updated_at
        position = chunk.next_position
        if chunk.done:
            return total, run_max, chunks


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
    batches = 0
    running = SyncCounts()

    def progress(counts: SyncCounts, b: Batch) -> None:
        nonlocal batches
        batches += 1
        running.add(counts)
        if on_progress is not None:
            on_progress(running, b.bytes_read, b.bytes_total)

    def read_chunk(position: str) -> ChunkResult:
        return sync_chunk(
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

    total, run_max, chunks = read_to_the_end(read_chunk)
    seconds = time.perf_counter() - started
    after = finish_sync(url, plan, run_max, total, as_of, seconds, full)
    return SyncResult(
        plan.source, total, plan.watermark_before, after, seconds, batches, chunks, full
    )


@task(name="plan-sync", retries=2, retry_delay_seconds=[2, 10])
def plan_task(
    database_url: str, source_url: str, full: bool, shard: int | None, shards: int
) -> SyncPlan:
    """Reads the watermark; a retry reads it again."""
    return plan_sync(database_url, source_url, full=full, shard=shard, shards=shards)


@task(name="finish-sync", retries=2, retry_delay_seconds=[2, 10])
def finish_task(
    database_url: str,
    plan: SyncPlan,
    run_max: datetime | None,
    counts: dict[str, int],
    as_of: datetime,
    seconds: float,
    full: bool,
) -> datetime | None:
    """Moves the watermark to `run_max` and records the update: the same again on a retry."""
    return finish_sync(database_url, plan, run_max, SyncCounts(**counts), as_of, seconds, full)


def count_rows(conn: Connection) -> dict[str, int]:
    """Rows per synced table (tests and the CLI summary)."""
    return {
        t.__tablename__: conn.scalar(select(func.count()).select_from(t)) or 0
        for t in (Merchant, Order, Buyer, Installment, Transaction, QuarantinedRecord)
    }
