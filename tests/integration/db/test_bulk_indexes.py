"""A first load builds the synced tables' secondary indexes at its end (PostgreSQL); a load
that died before its end gets them back from the next sync."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from dunning.db import get_engine, upgrade
from dunning.db.bulk_indexes import _secondary, defer_indexes, restore_indexes
from dunning.sample import generate_orders, write_jsonl
from dunning.tasks.sync_run import SYNCED_TABLES, plan_sync, run_sync

pytestmark = pytest.mark.postgres
AS_OF = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SECONDARY = {index.name for index in _secondary(SYNCED_TABLES)}


def present(url: str) -> set[str]:
    with get_engine(url).connect() as conn:
        names = conn.scalars(text("SELECT indexname FROM pg_indexes")).all()
    return SECONDARY & set(names)


def test_secondary_indexes_are_the_non_unique_ones_of_the_synced_tables():
    assert {
        "ix_orders_merchant_id",
        "ix_orders_synced_at",
        "ix_installments_due_date",
        "ix_transactions_processed_at",
    } == SECONDARY


def test_dropped_only_while_empty_and_built_once(postgres_url):
    upgrade(postgres_url)
    engine = get_engine(postgres_url)
    with engine.begin() as conn:
        assert defer_indexes(conn, SYNCED_TABLES)
    assert present(postgres_url) == set()
    with engine.begin() as conn:
        assert restore_indexes(conn, SYNCED_TABLES) == len(SECONDARY)
        assert restore_indexes(conn, SYNCED_TABLES) == 0
    assert present(postgres_url) == SECONDARY
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO orders (order_id, merchant_id, order_date, updated_at, status, "
                "currency, total_amount, payment_plan, payment_method, source, synced_at) "
                "VALUES ('o1', 'm1', :t, :t, 'active', 'EUR', 9, 'one_time_payment', 'sepa', "
                "'test', :t)"
            ),
            {"t": AS_OF},
        )
    with engine.begin() as conn:
        assert not defer_indexes(conn, SYNCED_TABLES)
    assert present(postgres_url) == SECONDARY


def test_a_cold_sync_ends_with_its_indexes_and_the_next_plan_repairs_a_dead_one(
    postgres_url, tmp_path
):
    upgrade(postgres_url)
    path = tmp_path / "shop.jsonl"
    write_jsonl(list(generate_orders(300, merchants=3, seed=7, as_of=AS_OF)), path)
    assert run_sync(postgres_url, str(path), batch_size=100, as_of=AS_OF).counts.inserted == 300
    assert present(postgres_url) == SECONDARY
    with get_engine(postgres_url).begin() as conn:  # as if a load had died after its plan
        for name in SECONDARY:
            conn.execute(text(f"DROP INDEX {name}"))
    plan_sync(postgres_url, str(path), full=False, shard=None, shards=1)
    assert present(postgres_url) == SECONDARY
