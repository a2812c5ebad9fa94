"""`sync_orders`: order snapshots from the source into the database, incrementally.

The flow runs the steps of `dunning.tasks.sync_run` (which the CLI and tests call as
`run_sync`) as Prefect tasks, through the same loop: one `sync-batches` task per chunk of
`batches_per_task` batches (default 10 x 5,000 records), so a million
orders take ~20 task runs, never one per order.

Watermark (per source; per shard when sharded) and why it is safe across a crash:
- The API delivers oldest change first, so each batch raises the watermark to its newest
  `updated_at` in the same transaction as its rows: it is never ahead of committed data.
- A file may hold snapshots in any order, so its watermark moves only when the whole
  file is committed; a crash mid-file re-reads the file from the old watermark.
- Equal timestamps: the API's `updated_since` is exclusive, so the sync asks from the
  watermark minus one microsecond (and a file keeps records with `updated_at >=`
  watermark). Snapshots stamped exactly at the watermark are read again and found
  unchanged (newest wins, equal is not newer) -- a few repeats per run instead of
  losing an order whose twin timestamp fell into the batch after a crash.
`full=True` ignores the watermark and reads everything; newest-wins still holds.

Issue 19: the source and the database are configuration (DUNNING_SOURCE_URL,
DUNNING_DATABASE_URL), never run parameters: whoever may start a run in the Prefect UI
must not point the worker, with its token, at a file or host of their choosing. A read of
the orders API ends by DUNNING_READ_DEADLINE_SECONDS over all its chunks.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger

from dunning.config import get_settings
from dunning.db import normalise_url
from dunning.tasks.sync_chunks import ChunkResult, sync_batches
from dunning.tasks.sync_run import finish_task, plan_task, read_to_the_end


def _run_name() -> str:
    """`sync <source> [full] [shard i/n]`: the source without credentials or query."""
    from prefect.runtime import flow_run

    from dunning.tasks.source import source_name

    params = flow_run.parameters or {}
    try:
        where = source_name(get_settings().source_url)
    except Exception:  # a bad URL fails in the run itself, with its message
        where = "source"
    name = f"sync {where}"
    if params.get("full"):
        name += " full"
    if params.get("shard") is not None:
        name += f" shard {params['shard']}/{params.get('shards', 1)}"
    return name


@flow(name="sync-orders", flow_run_name=_run_name, log_prints=False)
def sync_orders(
    full: bool = False,
    as_of: datetime | None = None,
    shard: int | None = None,
    shards: int = 1,
    batch_size: int | None = None,
    batches_per_task: int = 10,
) -> dict[str, Any]:
    """Sync orders from the configured source (DUNNING_SOURCE_URL): a JSON Lines file or
    the orders API. Returns the counts: read, inserted, updated, unchanged, quarantined.

    Args:
        full: Reload every order instead of the changes since the last sync.
        as_of: The moment the run counts as (ISO date-time with offset); empty means now.
        shard: Which shard of merchants this run handles (0 to shards-1); empty: all.
        shards: Into how many shards the merchants are split (1: no sharding).
        batch_size: Orders per batch read from the source; empty: the installation's setting.
        batches_per_task: Batches one task run writes before the next task run takes over.
    """
    import time

    from prefect.artifacts import (
        create_progress_artifact,
        create_table_artifact,
        update_progress_artifact,
    )

    logger = get_run_logger()
    settings = get_settings()
    as_of = (as_of or datetime.now(UTC)).astimezone(UTC)
    url = normalise_url(settings.database_url)
    source_url = settings.source_url
    size = batch_size or settings.batch_size
    started = time.perf_counter()
    plan = plan_task(url, source_url, full, shard, shards)
    deadline = time.time() + settings.read_deadline_seconds  # the read starts now
    logger.info(
        "sync %s from %s (watermark %s)",
        plan.key,
        "the start" if plan.since is None else plan.since.isoformat(),
        plan.watermark_before,
    )
    # A progress bar only for a sync of more than one chunk: an hourly sync is over in one,
    # and its three artifact calls cost more than its reading (a day's first run).
    progress_id = None

    def read_chunk(position: str) -> ChunkResult:
        nonlocal progress_id
        chunk = ChunkResult.from_dict(
            sync_batches(
                url,
                source_url,
                position,
                plan.since,
                as_of,
                size,
                batches_per_task,
                shard,
                shards,
                deadline,
            )
        )
        if chunk.bytes_total and not chunk.done:
            done = min(100.0, 100.0 * (chunk.bytes_read or 0) / chunk.bytes_total)
            if progress_id is None:
                progress_id = create_progress_artifact(done, description=f"Sync of {plan.source}")
            else:
                update_progress_artifact(progress_id, done)
        logger.info("synced a chunk: %s", chunk.counts.as_dict())
        return chunk

    total, run_max, _ = read_to_the_end(read_chunk)
    if progress_id is not None:
        update_progress_artifact(progress_id, 100.0)
    seconds = time.perf_counter() - started
    after = finish_task(url, plan, run_max, total.as_dict(), as_of, seconds, full)
    summary = {"source": plan.source, **total.as_dict(), "seconds": round(seconds, 2)}
    create_table_artifact([summary], key="sync-counts", description="Counts of the sync")
    if total.quarantined:
        logger.warning(
            "%d record(s) quarantined; see the quarantine table for field and reason",
            total.quarantined,
        )
    logger.info("sync done: %s; watermark now %s", total.as_dict(), after)
    return {**summary, "watermark": after.isoformat() if after else None}
