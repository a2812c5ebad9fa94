"""One chunk of a sync: up to a few batches read, validated and written.

A reader thread reads and validates the next batch while this one is written (the
database works on the other core); each batch commits on its own.
"""

from __future__ import annotations

import contextlib
import gc
import queue
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dunning.crashpoints import crashpoint
from dunning.db.order_writes import takes_copy_text
from dunning.db.sync_state import state_key
from dunning.tasks.orders_sink import SyncCounts, write_batch
from dunning.tasks.prefect_task import task
from dunning.tasks.read_groups import prepared_batches
from dunning.tasks.sync_worker import ChunkJob, worker_batches, worth_a_worker


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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChunkResult:
        """Back from `as_dict` (what the task run returns)."""
        top = data["max_updated_at"]
        return cls(
            SyncCounts(**data["counts"]),
            data["next_position"],
            data["done"],
            datetime.fromisoformat(top) if top else None,
            data["bytes_read"],
            data["bytes_total"],
        )


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

    if takes_copy_text(engine) and worth_a_worker(src, position):
        job = ChunkJob(
            str(src.path), src.max_line_bytes, src.name, position, since, as_of,
            batch_size, max_batches, shard, shards,
        )  # fmt: skip
        ready = worker_batches(job, src.identity)
    else:
        copy_to = src.name if takes_copy_text(engine) else None
        ready = prepared_batches(
            src, position, since, batch_size, shard=shard, shards=shards, as_of=as_of,
            copy_to=copy_to,
        )  # fmt: skip

    def produce() -> None:
        try:
            for n, (b, batch) in enumerate(ready, start=1):
                if stop.is_set():
                    break
                handoff.put((b, batch))
                if b.done or n >= max_batches:
                    break
        except BaseException as exc:  # handed to the writer, raised there
            handoff.put(exc)
            return
        finally:
            ready.close()
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


def _worth_retrying(task: Any, task_run: Any, state: Any) -> bool:
    """A source that cannot be read (refused file, refused token, cursor cycle, deadline
    passed) fails the same way again; a peer still failing after its own retries may not."""
    from dunning.tasks.source import SourceError

    return not isinstance(state.data, SourceError)


@task(
    name="sync-batches",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_worth_retrying,
    persist_result=False,  # it holds the source token: nothing of it goes to storage
    calls_outside=True,
)
def sync_batches(
    database_url: str,
    source_url: str,
    position: str,
    since: datetime | None,
    as_of: datetime,
    batch_size: int,
    max_batches: int,
    shard: int | None,
    shards: int,
    deadline: float,
) -> dict[str, Any]:
    """Read, validate and write up to `max_batches` batches from `position`.

    A retry starts again at `position`: batches it already committed are found unchanged.
    The token comes from the settings, never through a parameter (it would be stored).
    `deadline`: the `time.time()` by which the whole read must end.
    """
    from dunning.config import get_settings
    from dunning.tasks.source import token_for

    settings = get_settings()
    result = sync_chunk(
        database_url,
        source_url,
        position=position,
        since=since,
        as_of=as_of,
        token=token_for(source_url, settings),
        timeout=settings.http_timeout_seconds,
        batch_size=batch_size,
        max_batches=max_batches,
        shard=shard,
        shards=shards,
        deadline=deadline,
    )
    return result.as_dict()
