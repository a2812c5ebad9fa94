"""Sync from the orders API on loopback (real HTTP), on SQLite and PostgreSQL: paging,
watermark, faults with retries, a bad token, a crash between batches, cancellation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from dunning.db import get_engine
from dunning.models.schema import Order, SyncWatermark
from dunning.sample import generate_orders, mutate_orders
from dunning.servers.http import Faults
from dunning.servers.orders_api import start
from dunning.tasks.source import SourceAuthError
from dunning.tasks.sync_run import count_rows, run_sync
from tests.factories import order_record

AS_OF = datetime(2026, 11, 26, 6, tzinfo=UTC)


def rows(url: str) -> dict[str, int]:
    with get_engine(url).connect() as conn:
        return count_rows(conn)


def test_full_then_incremental_over_the_api(migrated_db):
    shop = list(generate_orders(700, merchants=5, seed=21, as_of=AS_OF))
    with start(shop, token="s3cret") as server:
        first = run_sync(migrated_db, server.url, token="s3cret", batch_size=200, as_of=AS_OF)
        assert (first.counts.read, first.counts.inserted) == (700, 700)
        assert server.page_calls == 1  # 700 orders fit one page of 1000
        newest = max(datetime.fromisoformat(r["updated_at"]) for r in shop)
        assert first.watermark_after == newest
        # nothing changed: only the snapshot(s) stamped exactly at the watermark come back
        quiet = run_sync(migrated_db, server.url, token="s3cret", as_of=AS_OF)
        assert quiet.counts.inserted == quiet.counts.updated == 0
        assert 1 <= quiet.counts.read == quiet.counts.unchanged < 5
        later = AS_OF + timedelta(days=1)
        changed = list(mutate_orders(shop, 0.2, seed=3, as_of=later))
        for record in changed:
            server.upsert(record)
        server.upsert(order_record("new-1", "m-new", updated_at=later.isoformat()))
        third = run_sync(migrated_db, server.url, token="s3cret", batch_size=50, as_of=later)
        assert third.counts.updated == len(changed) > 100
        assert third.counts.inserted == 1
        assert third.counts.read <= len(changed) + 1 + 5  # only what changed (plus ties)
        assert third.watermark_after == later
    assert rows(migrated_db)["orders"] == 701


def test_paging_with_small_pages(migrated_db):
    shop = list(generate_orders(230, merchants=3, seed=22, as_of=AS_OF))
    with start(shop) as server:
        import dunning.tasks.source as source_module

        old = source_module.PAGE_LIMIT
        source_module.PAGE_LIMIT = 20  # a real server with small pages
        try:
            result = run_sync(migrated_db, server.url, batch_size=45, as_of=AS_OF)
        finally:
            source_module.PAGE_LIMIT = old
        assert server.page_calls == 12
    assert result.counts.inserted == 230 and result.batches == 4  # 3 pages of 20 per batch


class CountingFaults(Faults):
    """Faults that remember how often each kind (told apart by its rate) was injected."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.hits: dict[float, int] = {}

    def draw(self, probability: float) -> bool:
        hit = super().draw(probability)
        if hit:
            self.hits[probability] = self.hits.get(probability, 0) + 1
        return hit


def test_faults_are_retried_until_success(migrated_db, monkeypatch):
    """503s, 429 with Retry-After, answers slower than the timeout, and cut-off bodies."""
    monkeypatch.setenv("DUNNING_HTTP_TIMEOUT_SECONDS", "0.5")
    from dunning.config import get_settings

    get_settings.cache_clear()
    import dunning.tasks.source as source_module

    monkeypatch.setattr(source_module, "PAGE_LIMIT", 100)
    shop = list(generate_orders(600, merchants=4, seed=23, as_of=AS_OF))
    faults = CountingFaults(
        error_5xx=0.25,
        rate_limit_429=0.2,
        retry_after_seconds=1,
        slow=0.15,
        slow_seconds=1.0,  # beyond the client's 0.5 s timeout
        truncated=0.3,
        seed=5,
    )
    with start(shop, token="t", faults=faults) as server:
        result = run_sync(migrated_db, server.url, token="t", batch_size=200, as_of=AS_OF)
        assert server.statuses.get(503, 0) >= 1 and server.statuses.get(429, 0) >= 1
        assert (
            faults.hits.get(0.15, 0) >= 1 and faults.hits.get(0.3, 0) >= 1
        )  # timeouts, cut-off bodies
    assert result.counts.inserted == 600
    assert rows(migrated_db)["orders"] == 600


def test_bad_token_gives_one_clear_error(migrated_db, cli):
    with start(list(generate_orders(5, 1, seed=1, as_of=AS_OF)), token="right") as server:
        with pytest.raises(SourceAuthError, match=r"refused the token \(HTTP 401\)"):
            run_sync(migrated_db, server.url, token="wrong", as_of=AS_OF)
        shown = cli(
            "sync",
            "--source",
            server.url,
            env={"DUNNING_DATABASE_URL": migrated_db, "DUNNING_SOURCE_TOKEN": "wrong"},
        )
    assert shown.returncode == 2
    lines = [line for line in shown.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "refused the token (HTTP 401)" in lines[0], shown.stderr
    assert "Traceback" not in shown.stderr + shown.stdout and "wrong" not in shown.stderr
    assert rows(migrated_db)["orders"] == 0


def test_crash_between_batches_with_equal_timestamps(migrated_db):
    """Many snapshots share one updated_at across a batch boundary. A crash after the first
    batch leaves the watermark at that timestamp; the rerun must still get the rest."""
    stamp = "2026-11-20T10:00:00+00:00"
    records = [order_record(f"o{i:03d}", f"m{i % 3}", updated_at=stamp) for i in range(120)]
    records += [
        order_record(f"p{i:03d}", "m9", updated_at="2026-11-21T10:00:00+00:00") for i in range(30)
    ]
    with start(records) as server:
        calls = []

        def crash(counts, done, total):
            calls.append(counts.read)
            raise KeyboardInterrupt("simulated crash after the first commit")

        import dunning.tasks.source as source_module

        old = source_module.PAGE_LIMIT
        source_module.PAGE_LIMIT = 50
        try:
            with pytest.raises(KeyboardInterrupt):
                run_sync(migrated_db, server.url, batch_size=50, on_progress=crash, as_of=AS_OF)
            with get_engine(migrated_db).connect() as conn:
                committed = conn.scalar(select(SyncWatermark.watermark))
                assert committed == datetime.fromisoformat(stamp)  # not ahead of the data
                assert rows(migrated_db)["orders"] == 50
            rerun = run_sync(migrated_db, server.url, batch_size=50, as_of=AS_OF)
        finally:
            source_module.PAGE_LIMIT = old
    assert rerun.counts.inserted == 100 and rerun.counts.unchanged == 50
    assert rows(migrated_db)["orders"] == 150


def test_cancel_call_is_idempotent_and_syncs_back(migrated_db):
    shop = [
        order_record("o1", updated_at="2026-11-01T00:00:00+00:00"),
        order_record("o2", updated_at="2026-11-01T00:00:00+00:00", status="refunded"),
    ]
    with start(shop, token="t") as server:
        run_sync(migrated_db, server.url, token="t", as_of=AS_OF)
        client = httpx.Client(base_url=server.url, headers={"Authorization": "Bearer t"})
        body = {"reason": "dunning_cancellation", "case_reference": "c-1"}

        def cancel(oid: str, key: str | None) -> httpx.Response:
            headers = {"Idempotency-Key": key} if key else {}
            return client.post(f"/v1/orders/{oid}/cancel", json=body, headers=headers)

        assert cancel("o1", "case-1-cancel").status_code == 200
        again = cancel("o1", "case-1-cancel")
        assert again.status_code == 200 and again.json()["repeat"] is True
        assert cancel("missing", "k").status_code == 404
        refused = cancel("o2", "case-2-cancel")
        assert refused.status_code == 409 and "refunded" in refused.json()["error"]
        assert cancel("o1", None).status_code == 400
        assert server.cancel_calls == [
            ("o1", "case-1-cancel"),
            ("o1", "case-1-cancel"),
            ("missing", "k"),
            ("o2", "case-2-cancel"),
        ]
        assert server.cancelled == {"o1": "case-1-cancel"}
        result = run_sync(migrated_db, server.url, token="t", as_of=AS_OF)
        client.close()
    assert result.counts.updated == 1
    with get_engine(migrated_db).connect() as conn:
        status = dict(conn.execute(select(Order.order_id, Order.status)).all())
    assert status == {"o1": "cancelled", "o2": "refunded"}


def test_future_stamps_never_push_the_watermark_past_as_of(migrated_db):
    """A broken record stamped in 2099 must not hide the changes that follow it; nor may a
    valid one stamped after the run's as_of."""
    early = order_record("o1", updated_at="2026-11-01T00:00:00+00:00")
    broken = order_record("bad", updated_at="2099-01-01T00:00:00+00:00", currency="euro")
    ahead = order_record("o2", updated_at="2026-11-27T00:00:00+00:00")
    with start([early, broken, ahead]) as server:
        first = run_sync(migrated_db, server.url, as_of=AS_OF)
        assert (first.counts.inserted, first.counts.quarantined) == (2, 1)
        assert first.watermark_after == AS_OF  # capped: o2 is stamped after as_of
        # o4 is stamped after as_of but before o2: a watermark at o2's stamp (or at the
        # broken record's 2099) would hide it from every later run
        server.upsert(order_record("o4", updated_at="2026-11-26T12:00:00+00:00"))
        second = run_sync(migrated_db, server.url, as_of=AS_OF + timedelta(days=3))
    assert second.counts.inserted == 1
    assert second.watermark_after == datetime(2026, 11, 27, tzinfo=UTC)
