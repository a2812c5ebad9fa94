"""Which orders a sync wrote since a mark: shared by detection and handover, with the
name of a run's scope and how often a scope is read whole whatever its marks say.

Sync stamps every order it writes with its run's as_of (`orders.synced_at`) and counts its
writes per stamp (`sync_stamps`, in each batch's transaction). A reader keeps the newest
stamp it has seen and that count; next time it reads the orders stamped later. Should the
count of the kept stamp have grown by then, a batch of that sync committed after the
reader looked, and that stamp is read again (>=).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dunning.models.schema import Order, SyncStamp

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Safety net: whatever the marks say, one full scan per scope at least this often.
FULL_EVERY = timedelta(days=7)


def scope_name(shard: int | None, shards: int) -> str:
    return "all" if shard is None else f"{shard}/{shards}"


def newest_stamp(session: Session) -> tuple[datetime | None, int]:
    """The newest `synced_at` and how many orders carry it: the mark to keep."""
    newest = session.scalar(select(func.max(Order.synced_at)))
    return newest, count_stamped(session, newest)


def count_stamped(session: Session, moment: datetime | None) -> int:
    """How many order writes sync made with this stamp (grows while a sync of it runs)."""
    if moment is None:
        return 0
    return session.scalar(select(SyncStamp.writes).where(SyncStamp.stamp == moment)) or 0


def since_mark(
    session: Session, stamp: datetime | None, count: int | None
) -> tuple[datetime, bool]:
    """(stamp, inclusive): read the orders synced after the kept stamp, or from it on."""
    if stamp is None:
        return EPOCH, False
    return stamp, count_stamped(session, stamp) > (count or 0)
