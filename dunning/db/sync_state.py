"""What a sync remembers between its batches and runs: the watermark per source (or shard),
the count of order writes per run stamp, and the `last_data_update` row."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from dunning.db.dialect import insert_for, is_postgres, upsert
from dunning.models.schema import LastDataUpdate, SyncStamp, SyncWatermark


def state_key(source: str, shard: int | None, shards: int) -> str:
    """The watermark row of a source, or of one shard of it."""
    if shard is None or shards <= 1:
        return source
    return f"{source}#shard{shard}of{shards}"


def read_watermark(conn: Connection, source: str) -> datetime | None:
    return conn.scalar(select(SyncWatermark.watermark).where(SyncWatermark.source == source))


def set_watermark(conn: Connection, source: str, moment: datetime, as_of: datetime) -> None:
    """Raise the source's watermark to `moment` (never lower it, never past `as_of`: a
    snapshot stamped in the future is read again until its time has come, instead of
    hiding the changes stamped before it)."""
    moment = min(moment, as_of)
    query = select(SyncWatermark.watermark).where(SyncWatermark.source == source)
    if is_postgres(conn):  # two syncs of one source at once: the second waits, then compares
        query = query.with_for_update()
    current = conn.scalar(query)
    if current is not None and current >= moment:
        return
    conn.execute(
        insert_for(conn, SyncWatermark)
        .values(source=source, watermark=moment, cursor=None, updated_at=as_of)
        .on_conflict_do_update(
            # the cursor is left as it is: only the watermark moves
            index_elements=["source"],
            set_={"watermark": moment, "updated_at": as_of},
        )
    )


def count_stamp(conn: Connection, as_of: datetime, writes: int) -> None:
    """Add this batch's order writes to its stamp's count (dunning.tasks.synced_since)."""
    conn.execute(
        insert_for(conn, SyncStamp)
        .values(stamp=as_of, writes=writes)
        .on_conflict_do_update(
            index_elements=[SyncStamp.stamp], set_={"writes": SyncStamp.writes + writes}
        )
    )


def upsert_last_data_update(
    conn: Connection, name: str, updated_at: datetime, details: dict[str, Any] | None
) -> None:
    """Insert or replace one `last_data_update` row: a sync writes `sync:<source>`, the board
    refresh its own name. The one writer of that table."""
    values = {"name": name, "updated_at": updated_at, "details": details}
    conn.execute(upsert(conn, LastDataUpdate, values, ["name"]))
