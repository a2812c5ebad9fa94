"""A file read in groups of a few lines gives the writer the same batches as one read whole:
the same orders (a newer snapshot in a later group replaces the earlier one, the first of
equal ones stays), the same COPY text, the same refusals and counts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from dunning.sample import generate_orders
from dunning.tasks import read_groups
from dunning.tasks.orders_sink import encode_for_copy, prepare_batch
from dunning.tasks.read_groups import prepared_batches
from dunning.tasks.source import FileSource
from tests.factories import order_record

AS_OF = datetime(2026, 11, 26, 6, tzinfo=UTC)


def shop_lines() -> list[bytes]:
    shop = [orjson.dumps(r) for r in generate_orders(40, merchants=3, seed=5, as_of=AS_OF)]
    at = lambda day: f"2026-02-0{day}T00:00:00+00:00"  # noqa: E731
    return [
        orjson.dumps(order_record("dup-newer-later", updated_at=at(1), status="active")),
        *shop[:15],
        orjson.dumps(order_record("dup-tie", updated_at=at(2), status="active")),
        b'{"order_id": "broken", ',
        *shop[15:30],
        orjson.dumps(order_record("dup-newer-later", updated_at=at(3), status="completed")),
        orjson.dumps(order_record("dup-older-later", updated_at=at(5), status="active")),
        b"",
        orjson.dumps(order_record("dup-tie", updated_at=at(2), status="cancelled")),
        orjson.dumps(order_record("dup-older-later", updated_at=at(4), status="cancelled")),
        orjson.dumps(order_record("bad-amount", total_amount="12,50")),
        *shop[30:],
    ]


def read(path: Path, batch_size: int, copy_to: str | None) -> list:
    src = FileSource(path)
    try:
        return list(prepared_batches(src, "", None, batch_size, as_of=AS_OF, copy_to=copy_to))
    finally:
        src.close()


def whole(path: Path, copy_to: str | None):
    """The file as one batch, prepared at once (as the reader did before groups)."""
    src = FileSource(path)
    try:
        (b,) = list(src.batches("", None, 10_000))
        prepared = prepare_batch(b.items, None, as_of=AS_OF)
    finally:
        src.close()
    return prepared if copy_to is None else encode_for_copy(prepared, copy_to, AS_OF)


@pytest.mark.parametrize("group", [1, 2, 7])
@pytest.mark.parametrize("copy_to", [None, "shop"], ids=["rows", "copy text"])
def test_groups_merge_into_the_batch_one_read_would_give(tmp_path, monkeypatch, group, copy_to):
    path = tmp_path / "shop.jsonl"
    path.write_bytes(b"\n".join(shop_lines()) + b"\n")
    monkeypatch.setattr(read_groups, "READ_GROUP", group)
    (got,) = [p for _, p in read(path, 10_000, copy_to)]
    want = whole(path, copy_to)
    assert (got.read, got.skipped, got.superseded) == (want.read, want.skipped, want.superseded)
    assert got.superseded == 3
    assert got.max_updated_at == want.max_updated_at
    assert [(b.position, b.field, b.reason) for b in got.bad] == [
        (b.position, b.field, b.reason) for b in want.bad
    ]
    assert [b.field for b in got.bad] == ["(line)", "total_amount"]
    if copy_to is None:
        assert got.orders == want.orders
        status = {o.order[0]: o.order[5] for o in got.orders}
    else:
        assert (got.orders.ids, got.orders.updated) == (want.orders.ids, want.orders.updated)
        assert (got.orders.blocks, got.orders.ends) == (want.orders.blocks, want.orders.ends)
        ids = got.orders.ids
        status = {  # the status is the fifth COPY column of `orders`
            oid: got.orders.text("orders", [ids.index(oid)]).split(b"\t")[4].decode() for oid in ids
        }
    assert {k: status[k] for k in ("dup-newer-later", "dup-older-later", "dup-tie")} == {
        "dup-newer-later": "completed",
        "dup-older-later": "active",
        "dup-tie": "active",
    }


def test_batches_keep_their_size_and_positions_when_read_in_groups(tmp_path, monkeypatch):
    path = tmp_path / "shop.jsonl"
    path.write_bytes(b"\n".join(shop_lines()) + b"\n")
    monkeypatch.setattr(read_groups, "READ_GROUP", 3)
    grouped = read(path, 12, "shop")
    src = FileSource(path)
    try:
        plain = list(src.batches("", None, 12))
    finally:
        src.close()
    assert [b.next_position for b, _ in grouped] == [b.next_position for b in plain]
    assert [b.done for b, _ in grouped] == [b.done for b in plain]
    assert [p.read for _, p in grouped] == [len(b.items) for b in plain]
