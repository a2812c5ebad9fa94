"""The quarantine: records the sync refused, kept once each (by digest) with the field and
the rule they broke, and resolved when a valid snapshot of their order arrives."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select, update

from dunning.db.dialect import insert_for
from dunning.models.schema import Buyer, Order, QuarantinedRecord


@dataclass(slots=True)
class BadRecord:
    position: str
    raw: bytes
    order_id: str | None
    record_updated_at: datetime | None
    field: str
    reason: str


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


def quarantine(conn: Connection, source: str, bad: list[BadRecord], as_of: datetime) -> None:
    """Keep the refused records of a batch; one already kept (same source and bytes) stays
    as it was."""
    qrows = _quarantine_rows(source, bad, as_of)
    if qrows:
        _forget_purged(conn, qrows)
        ins = insert_for(conn, QuarantinedRecord)
        conn.execute(ins.on_conflict_do_nothing(index_elements=["source", "digest"]), qrows)


def resolve_quarantine(
    conn: Connection, order_ids: list[str], bad: list[BadRecord], as_of: datetime
) -> int:
    """Mark entries resolved whose order now holds a valid snapshot at least as new
    (`order_ids`: the valid snapshots of the batch)."""
    ids = order_ids + [b.order_id for b in bad if b.order_id]
    if not ids:
        return 0
    if not bad and not conn.scalar(
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
