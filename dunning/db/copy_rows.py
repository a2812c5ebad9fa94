"""Validated orders as PostgreSQL COPY text: one block per table, and where each order's
rows end in it.

Encoding is done where the batch is validated (the reader, or the sync's worker process),
so the process that writes only hands bytes to the server: at a million orders, formatting
five million rows cost the writer's thread ~4 s under the same GIL as the reader.
The formatting is psycopg's own (`format_row_text`, in C with psycopg-binary), the one its
`Copy.write_row` uses: the bytes are those `write_row` would send.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from psycopg._copy_base import format_row_text  # psycopg's COPY formatter (pinned 3.3)
from psycopg.adapt import Transformer

from dunning.models.record_rows import ORDER_COLUMNS, OrderRows

# `orders` as COPYed: without merchant_name (that goes to `merchants`), with the source and
# the moment of the sync. The staging table of newer snapshots has the same columns.
ORDER_COPY_COLUMNS = (*(c for c in ORDER_COLUMNS if c != "merchant_name"), "source", "synced_at")
TABLES = ("orders", "buyers", "installments", "transactions")


@dataclass(slots=True)
class CopyRows:
    ids: list[str]
    # each order's updated_at in UTC, ISO 8601 to the microsecond: of one width, so that
    # texts compare as the moments do (parsed only where compared with the table's)
    updated: list[str]
    merchant_ids: list[str]
    merchant_names: list[str | None]
    blocks: dict[str, bytes]  # table -> the COPY text of every order's rows
    ends: dict[str, list[int]]  # table -> the offset where each order's rows end

    def __len__(self) -> int:
        return len(self.ids)

    def text(self, table: str, picked: list[int] | None = None) -> bytes:
        """The COPY text of `table` for the orders at `picked` (None: all of them)."""
        block = self.blocks[table]
        if picked is None:
            return block
        ends = self.ends[table]
        return b"".join(block[ends[i - 1] if i else 0 : ends[i]] for i in picked)


def encode(orders: list[OrderRows], source: str, as_of: datetime) -> CopyRows:
    """The COPY text of `orders` (their order, buyer, installment and transaction rows)."""
    tx = Transformer()
    stamp = as_of.isoformat()
    blocks = {t: bytearray() for t in TABLES}
    ends: dict[str, list[int]] = {t: [] for t in TABLES}
    o_out, b_out, i_out, t_out = (blocks[t] for t in TABLES)
    o_end, b_end, i_end, t_end = (ends[t] for t in TABLES)
    for o in orders:
        row = o.order
        # ORDER_COPY_COLUMNS: without merchant_name (index 2), then source and synced_at
        format_row_text((*row[:2], *row[3:], source, stamp), tx, o_out)
        o_end.append(len(o_out))
        format_row_text(o.buyer, tx, b_out)
        b_end.append(len(b_out))
        for inst in o.installments:
            format_row_text(inst, tx, i_out)
        i_end.append(len(i_out))
        for t in o.transactions:
            format_row_text(t, tx, t_out)
        t_end.append(len(t_out))
    return CopyRows(
        ids=[o.order[0] for o in orders],
        updated=[_utc_text(o.updated_at) for o in orders],
        merchant_ids=[o.order[1] for o in orders],
        merchant_names=[o.order[2] for o in orders],
        blocks={t: bytes(b) for t, b in blocks.items()},
        ends=ends,
    )


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def joined(parts: list[CopyRows]) -> CopyRows:
    """One `CopyRows` of several, in their order."""
    if len(parts) == 1:
        return parts[0]
    ends: dict[str, list[int]] = {t: [] for t in TABLES}
    for t in TABLES:
        shift, out = 0, ends[t]
        for part in parts:
            out.extend([end + shift for end in part.ends[t]] if shift else part.ends[t])
            shift += len(part.blocks[t])
    return CopyRows(
        ids=[oid for part in parts for oid in part.ids],
        updated=[u for part in parts for u in part.updated],
        merchant_ids=[m for part in parts for m in part.merchant_ids],
        merchant_names=[n for part in parts for n in part.merchant_names],
        blocks={t: b"".join(part.blocks[t] for part in parts) for t in TABLES},
        ends=ends,
    )


def picked(rows: CopyRows, at: list[int]) -> CopyRows:
    """The orders at the indexes `at`, in that order."""
    blocks = {t: rows.text(t, at) for t in TABLES}
    ends: dict[str, list[int]] = {}
    for t in TABLES:
        old, out, total = rows.ends[t], [], 0
        for i in at:
            total += old[i] - (old[i - 1] if i else 0)
            out.append(total)
        ends[t] = out
    return CopyRows(
        ids=[rows.ids[i] for i in at],
        updated=[rows.updated[i] for i in at],
        merchant_ids=[rows.merchant_ids[i] for i in at],
        merchant_names=[rows.merchant_names[i] for i in at],
        blocks=blocks,
        ends=ends,
    )
