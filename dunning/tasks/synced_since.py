"""Which orders a sync wrote since a mark: shared by detection and handover.

Sync stamps every order it writes with its run's as_of (`orders.synced_at`). A reader keeps
the newest stamp it has seen and how many orders carried it; next time it reads the orders
stamped later. Should more orders carry the kept stamp by then, a batch of that sync
committed after the reader looked, and that stamp is read again (>=).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dunning.models.schema import Order

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def newest_stamp(session: Session) -> tuple[datetime | None, int]:
    """The newest `synced_at` and how many orders carry it: the mark to keep."""
    newest = session.scalar(select(func.max(Order.synced_at)))
    return newest, count_stamped(session, newest)


def count_stamped(session: Session, moment: datetime | None) -> int:
    if moment is None:
        return 0
    return session.scalar(select(func.count()).where(Order.synced_at == moment)) or 0


def since_mark(
    session: Session, stamp: datetime | None, count: int | None
) -> tuple[datetime, bool]:
    """(stamp, inclusive): read the orders synced after the kept stamp, or from it on."""
    if stamp is None:
        return EPOCH, False
    return stamp, count_stamped(session, stamp) > (count or 0)
