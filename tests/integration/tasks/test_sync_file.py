"""Sync from JSON Lines files, on SQLite and PostgreSQL: full, incremental, idempotent,
newest wins, crash between batches, quarantine and its resolution."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import orjson
import pytest
from sqlalchemy import select

from dunning.db import get_engine
from dunning.models.schema import (
    Buyer,
    Installment,
    LastDataUpdate,
    Merchant,
    Order,
    QuarantinedRecord,
    SyncWatermark,
    Transaction,
)
from dunning.models.sharding import shard_key
from dunning.sample import generate_orders, mutate_orders, write_jsonl
from dunning.tasks.sync_run import count_rows, run_sync
from tests.concurrency import at_once
from tests.factories import address, order_record, sale, schedule

AS_OF = datetime(2026, 11, 26, 6, tzinfo=UTC)


def rows(url: str) -> dict[str, int]:
    with get_engine(url).connect() as conn:
        return count_rows(conn)


def snapshot(url: str) -> dict:
    """Everything the sync wrote, comparable across databases and runs."""
    with get_engine(url).connect() as conn:
        return {
            "orders": sorted(
                (o.order_id, o.merchant_id, o.updated_at, o.status, str(o.total_amount))
                for o in conn.execute(select(Order))
            ),
            "installments": sorted(
                (i.order_id, i.number, i.due_date, f"{i.amount:.2f}")
                for i in conn.execute(select(Installment))
            ),
            "transactions": sorted(
                (t.order_id, t.transaction_id, t.type, f"{t.amount:.2f}", t.processed_at)
                for t in conn.execute(select(Transaction))
            ),
            "buyers": sorted(
                (b.order_id, b.last_name, b.zip_code) for b in conn.execute(select(Buyer))
            ),
        }


def write(path, records) -> str:
    write_jsonl(records, path)
    return str(path)


def test_full_load_counts_and_rows(migrated_db, tmp_path):
    shop = list(generate_orders(1200, merchants=7, seed=5, as_of=AS_OF))
    path = write(tmp_path / "shop.jsonl", shop)
    result = run_sync(migrated_db, path, batch_size=250, batches_per_chunk=2, as_of=AS_OF)
    c = result.counts
    assert (c.read, c.inserted, c.updated, c.unchanged, c.quarantined) == (1200, 1200, 0, 0, 0)
    assert result.batches == 5 and result.chunks == 3
    assert rows(migrated_db) == {
        "merchants": 7,
        "orders": 1200,
        "buyers": 1200,
        "installments": sum(len(r["installments"]) for r in shop),
        "transactions": sum(len(r["transactions"]) for r in shop),
        "quarantine": 0,
    }
    newest = max(datetime.fromisoformat(r["updated_at"]) for r in shop)
    assert result.watermark_after == newest
    with get_engine(migrated_db).connect() as conn:
        merchant = conn.execute(select(Merchant).where(Merchant.merchant_id == "m00001")).one()
        assert merchant.shard_key == shard_key("m00001") and merchant.name
        sync_row = conn.execute(select(LastDataUpdate)).one()
        assert sync_row.name == f"sync:file:{tmp_path / 'shop.jsonl'}"
        assert sync_row.details["counts"]["inserted"] == 1200
        sample = conn.execute(
            select(Transaction).where(Transaction.type == "chargeback").limit(1)
        ).one()
        assert sample.fee is not None and sample.reason_code


def test_rerun_is_idempotent(migrated_db, tmp_path):
    shop = list(generate_orders(600, merchants=4, seed=6, as_of=AS_OF))
    shop.insert(100, {"order_id": "broken"})  # one quarantined record
    path = write(tmp_path / "shop.jsonl.gz", shop)
    first = run_sync(migrated_db, path, batch_size=200, as_of=AS_OF)
    before, data = rows(migrated_db), snapshot(migrated_db)
    again = run_sync(migrated_db, path, batch_size=200, as_of=AS_OF + timedelta(hours=1))
    full = run_sync(migrated_db, path, batch_size=200, full=True, as_of=AS_OF)
    assert first.counts.inserted == 600 and first.counts.quarantined == 1
    for rerun in (again, full):
        assert rerun.counts.read == first.counts.read == 601
        assert rerun.counts.quarantined == 1
        assert (rerun.counts.inserted, rerun.counts.updated) == (0, 0)
        assert rerun.counts.unchanged + rerun.counts.skipped == 600
    assert full.counts.unchanged == 600  # --full reads everything again
    assert rows(migrated_db) == before and snapshot(migrated_db) == data


def test_incremental_load_takes_only_changes(migrated_db, tmp_path):
    shop = list(generate_orders(800, merchants=5, seed=8, as_of=AS_OF))
    export = tmp_path / "export.jsonl"  # the platform rewrites its export in place
    run_sync(migrated_db, write(export, shop), as_of=AS_OF)
    later = AS_OF + timedelta(days=2)
    changed = list(mutate_orders(shop, 0.1, seed=1, as_of=later))
    # The platform's next export: everything again, with the changed snapshots.
    by_id = {r["order_id"]: r for r in shop} | {r["order_id"]: r for r in changed}
    new_order = order_record(
        "fresh-1", "m-new", updated_at=(later - timedelta(minutes=5)).isoformat()
    )
    day2 = write(export, [*by_id.values(), new_order])
    result = run_sync(migrated_db, day2, batch_size=300, as_of=later)
    assert result.counts.updated == len(changed) > 40
    assert result.counts.inserted == 1
    # Older than the watermark: not even validated again.
    assert result.counts.skipped + result.counts.unchanged == 800 - len(changed)
    assert result.counts.skipped > 600
    with get_engine(migrated_db).connect() as conn:
        for record in changed[:20]:
            stored = conn.scalar(
                select(Order.updated_at).where(Order.order_id == record["order_id"])
            )
            assert stored == datetime.fromisoformat(record["updated_at"])
        assert conn.scalar(select(Merchant.name).where(Merchant.merchant_id == "m-new"))
        # the children of a changed order are replaced, not added to
        inst = Counter(o for (o,) in conn.execute(select(Installment.order_id)))
        txs = Counter(o for (o,) in conn.execute(select(Transaction.order_id)))
    for record in [*by_id.values(), new_order]:
        oid = record["order_id"]
        assert (inst[oid], txs[oid]) == (len(record["installments"]), len(record["transactions"]))


def test_a_newer_snapshot_leaves_exactly_its_own_children(migrated_db, tmp_path):
    """Changed, dropped and added installments, transactions and buyer fields: after the
    newer snapshot the rows are those of the newer snapshot, nothing of the old left."""
    paid_at = AS_OF - timedelta(days=20)
    v1 = [
        order_record(
            "a",
            updated_at=(AS_OF - timedelta(days=30)).isoformat(),
            installments=schedule(3, AS_OF.date() - timedelta(days=60), "30.00"),
            transactions=[sale("a-s1", 1, "30.00", paid_at), sale("a-s2", 2, "30.00", paid_at)],
        ),
        order_record("b", updated_at=(AS_OF - timedelta(days=30)).isoformat()),
    ]
    v2 = [
        order_record(
            "a",
            updated_at=(AS_OF - timedelta(days=1)).isoformat(),
            buyer=address(zip_code="80331", city="München"),
            installments=schedule(2, AS_OF.date() - timedelta(days=60), "45.00"),
            transactions=[sale("a-s1", 1, "45.00", paid_at), sale("a-s3", 2, "10.00", paid_at)],
        ),
        order_record("b", updated_at=(AS_OF - timedelta(days=1)).isoformat()),  # same children
    ]
    run_sync(migrated_db, write(tmp_path / "v1.jsonl", v1), as_of=AS_OF)
    second = run_sync(migrated_db, write(tmp_path / "v2.jsonl", v2), as_of=AS_OF)
    assert (second.counts.updated, second.counts.inserted) == (2, 0)
    got = snapshot(migrated_db)
    assert got["installments"] == sorted(
        (r["order_id"], i["number"], date.fromisoformat(i["due_date"]), i["amount"])
        for r in v2
        for i in r["installments"]
    )
    assert got["transactions"] == sorted(
        (
            r["order_id"],
            t["transaction_id"],
            t["type"],
            t["amount"],
            datetime.fromisoformat(t["processed_at"]),
        )
        for r in v2
        for t in r["transactions"]
    )
    assert got["buyers"] == [("a", "Mustermann", "80331"), ("b", "Mustermann", "51147")]


def test_newest_wins_out_of_order(migrated_db, tmp_path):
    old = order_record("o1", updated_at="2026-02-01T00:00:00+00:00", status="active")
    new = order_record(
        "o1",
        updated_at="2026-02-03T00:00:00+00:00",
        status="completed",
        installments=schedule(2, AS_OF.date(), "49.50"),
    )
    newer_same_batch = order_record("o2", updated_at="2026-02-05T00:00:00+01:00")
    older_same_batch = order_record(
        "o2", updated_at="2026-02-04T00:00:00+00:00", status="cancelled"
    )
    # Within one batch: the newer snapshot wins wherever it stands.
    first = run_sync(
        migrated_db,
        write(tmp_path / "a.jsonl", [new, newer_same_batch, old, older_same_batch]),
        as_of=AS_OF,
    )
    assert (first.counts.inserted, first.counts.unchanged) == (2, 2)
    # A later file that carries the older snapshot: never overwrites.
    second = run_sync(
        migrated_db, write(tmp_path / "b.jsonl", [old, older_same_batch]), full=True, as_of=AS_OF
    )
    assert (second.counts.updated, second.counts.unchanged) == (0, 2)
    with get_engine(migrated_db).connect() as conn:
        orders = dict(conn.execute(select(Order.order_id, Order.status)).all())
        assert orders == {"o1": "completed", "o2": "active"}
        assert (
            conn.scalar(
                select(Installment.number)
                .where(Installment.order_id == "o1")
                .order_by(Installment.number.desc())
            )
            == 2
        )


def test_a_known_order_after_fresh_batches_is_found(migrated_db, tmp_path, monkeypatch):
    """After a batch of fresh orders only, PostgreSQL COPYs the next batch without looking
    its ids up; a batch that holds a known order after all takes the lookup instead, and
    newest wins as ever."""
    from dunning.db import order_writes_pg

    tries: list[bool] = []
    monkeypatch.setattr(order_writes_pg, "_FRESH_BEFORE", {})
    real = order_writes_pg._copied_as_fresh
    monkeypatch.setattr(
        order_writes_pg, "_copied_as_fresh", lambda *a: tries.append(real(*a)) or tries[-1]
    )
    at = lambda day: f"2026-02-0{day}T00:00:00+00:00"  # noqa: E731
    first = {oid: order_record(oid, updated_at=at(2), status="active") for oid in "abcdefgh"}
    newer_a = order_record("a", updated_at=at(3), status="completed")
    older_b = order_record("b", updated_at=at(1), status="cancelled")
    batches = [["a", "b"], ["c", "d"], ["e", newer_a], ["f", "g"], ["h", older_b]]
    records = [first[r] if isinstance(r, str) else r for batch in batches for r in batch]
    result = run_sync(migrated_db, write(tmp_path / "shop.jsonl", records), batch_size=2)
    assert (result.counts.inserted, result.counts.updated, result.counts.unchanged) == (8, 1, 1)
    with get_engine(migrated_db).connect() as conn:
        status = dict(conn.execute(select(Order.order_id, Order.status)).all())
    assert status == {oid: "active" for oid in "bcdefgh"} | {"a": "completed"}
    if migrated_db.startswith("postgresql"):
        # batch 2 fresh as hoped; batch 3 holds `a`; batch 4 looked up; batch 5 holds `b`
        assert tries == [True, False, False]


def test_crash_between_batches_then_rerun_converges(migrated_db, tmp_path):
    shop = list(generate_orders(900, merchants=6, seed=9, as_of=AS_OF))
    path = write(tmp_path / "shop.jsonl", shop)
    seen = []

    def crash_after_two(counts, done, total):
        seen.append(done)
        if len(seen) == 2:
            raise KeyboardInterrupt("simulated crash after the second commit")

    with pytest.raises(KeyboardInterrupt):
        run_sync(migrated_db, path, batch_size=200, as_of=AS_OF, on_progress=crash_after_two)
    assert rows(migrated_db)["orders"] == 400  # two batches committed, nothing more
    with get_engine(migrated_db).connect() as conn:
        # a file may be unordered: its watermark moves only when the file is done
        assert conn.scalar(select(SyncWatermark.watermark)) is None
    rerun = run_sync(migrated_db, path, batch_size=200, as_of=AS_OF)
    assert (rerun.counts.inserted, rerun.counts.unchanged) == (500, 400)
    assert rows(migrated_db)["orders"] == 900
    # same rows as a clean load of the same file elsewhere
    clean = f"sqlite:///{tmp_path / 'clean.db'}"
    from dunning.db import upgrade

    upgrade(clean)
    run_sync(clean, path, as_of=AS_OF)
    assert snapshot(clean) == snapshot(migrated_db)


def test_quarantined_order_fixed_later_is_resolved(migrated_db, tmp_path):
    bad = order_record("o7", updated_at="2026-03-01T00:00:00+00:00", total_amount="12.345")
    other = order_record("o8", updated_at="2026-03-01T00:00:00+00:00", currency="Euro")
    first = run_sync(migrated_db, write(tmp_path / "a.jsonl", [bad, other]), as_of=AS_OF)
    assert first.counts.quarantined == 2 and first.counts.inserted == 0
    with get_engine(migrated_db).connect() as conn:
        entries = {q.order_id: q for q in conn.execute(select(QuarantinedRecord)).all()}
    assert entries["o7"].field == "total_amount" and "12.345" in entries["o7"].reason
    assert entries["o7"].position == "line 1" and orjson.loads(entries["o7"].raw) == bad
    assert entries["o8"].field == "currency"
    assert entries["o7"].resolved_at is None
    fixed = dict(bad, total_amount="12.35", updated_at="2026-03-02T00:00:00+00:00")
    second = run_sync(migrated_db, write(tmp_path / "b.jsonl", [fixed]), as_of=AS_OF)
    assert second.counts.inserted == 1 and second.counts.resolved == 1
    with get_engine(migrated_db).connect() as conn:
        resolved = dict(
            conn.execute(select(QuarantinedRecord.order_id, QuarantinedRecord.resolved_at)).all()
        )
    assert resolved["o7"] == AS_OF and resolved["o8"] is None


def test_buyer_type_is_stored_and_an_unknown_one_quarantined(migrated_db, tmp_path):
    shop = [
        order_record("c1"),  # absent: consumer
        order_record("b1", buyer=address(company_name="Muster GmbH", type="business")),
        order_record("x1", buyer=address(type="enterprise")),
    ]
    result = run_sync(migrated_db, write(tmp_path / "t.jsonl", shop), as_of=AS_OF)
    assert (result.counts.inserted, result.counts.quarantined) == (2, 1)
    with get_engine(migrated_db).connect() as conn:
        kinds = dict(conn.execute(select(Buyer.order_id, Buyer.buyer_type)).all())
        bad = conn.execute(select(QuarantinedRecord)).one()
    assert kinds == {"c1": "consumer", "b1": "business"}
    assert (bad.order_id, bad.field) == ("x1", "buyer.type") and "must be one of" in bad.reason
    # a newer snapshot changes the type (the PostgreSQL merge path)
    newer = order_record("c1", updated_at=AS_OF.isoformat(), buyer=address(type="business"))
    run_sync(migrated_db, write(tmp_path / "u.jsonl", [newer]), as_of=AS_OF)
    with get_engine(migrated_db).connect() as conn:
        assert conn.scalar(select(Buyer.buyer_type).where(Buyer.order_id == "c1")) == "business"


def test_source_url_forms(migrated_db, tmp_path):
    path = write(tmp_path / "shop.jsonl", generate_orders(30, 2, seed=1, as_of=AS_OF))
    for form in (path, f"file:{path}", f"file://{path}"):
        result = run_sync(migrated_db, form, full=True, as_of=AS_OF)
        assert result.counts.read == 30
        assert result.source == f"file:{path}"


def test_two_syncs_at_once_insert_each_order_once(migrated_db, tmp_path):
    """Two runs over the same file at the same time (e.g. two overlapping schedules)."""
    shop = list(generate_orders(1500, merchants=5, seed=12, as_of=AS_OF))
    path = write(tmp_path / "shop.jsonl", shop)
    results = at_once(lambda: run_sync(migrated_db, path, batch_size=100, as_of=AS_OF))
    assert sum(r.counts.inserted for r in results) == 1500
    assert sum(r.counts.unchanged for r in results) == 1500
    assert rows(migrated_db)["orders"] == 1500
    assert rows(migrated_db)["installments"] == sum(len(r["installments"]) for r in shop)


def test_two_shards_together_load_what_one_run_loads(migrated_db, tmp_path):
    shop = list(generate_orders(500, merchants=9, seed=13, as_of=AS_OF))
    shop.append({"no": "merchant"})  # a broken record: shard 0 quarantines it, once
    path = write(tmp_path / "shop.jsonl", shop)
    parts = [
        run_sync(migrated_db, path, shard=i, shards=2, batch_size=100, as_of=AS_OF)
        for i in range(2)
    ]
    assert [p.counts.inserted for p in parts] != [500, 0] and sum(
        p.counts.inserted for p in parts
    ) == 500
    assert [p.counts.quarantined for p in parts] == [1, 0]
    with get_engine(migrated_db).connect() as conn:
        keys = set(conn.scalars(select(SyncWatermark.source)))
        merchants = conn.execute(select(Merchant.merchant_id, Merchant.shard_key)).all()
    assert keys == {f"file:{path}#shard0of2", f"file:{path}#shard1of2"}
    for i, part in enumerate(parts):
        assert part.counts.inserted == sum(
            1 for r in shop[:-1] if shard_key(r["merchant_id"]) % 2 == i
        )
    assert len(merchants) == 9
    clean = f"sqlite:///{tmp_path / 'one.db'}"
    from dunning.db import upgrade

    upgrade(clean)
    run_sync(clean, path, as_of=AS_OF)
    assert snapshot(clean) == snapshot(migrated_db)
