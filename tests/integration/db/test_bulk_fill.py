"""A first load builds the synced tables' secondary indexes at its end (PostgreSQL); a load
that died before its end gets them back from the next sync."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from dunning.bench.environment import case_rows
from dunning.db import get_engine, upgrade
from dunning.db.bulk_fill import _secondary, defer_indexes, restore_indexes
from dunning.sample import generate_orders, write_jsonl
from dunning.tasks.sync_run import SYNCED_TABLES, plan_sync, run_sync
from tests.concurrency import at_once

pytestmark = pytest.mark.postgres
AS_OF = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SECONDARY = {index.name for index in _secondary(SYNCED_TABLES)}


def present(url: str) -> set[str]:
    with get_engine(url).connect() as conn:
        names = conn.scalars(text("SELECT indexname FROM pg_indexes")).all()
    return SECONDARY & set(names)


def insert_one_order(conn) -> None:
    conn.execute(
        text(
            "INSERT INTO orders (order_id, merchant_id, order_date, updated_at, status, "
            "currency, total_amount, payment_plan, payment_method, source, synced_at) "
            "VALUES ('o1', 'm1', :t, :t, 'active', 'EUR', 9, 'one_time_payment', 'sepa', "
            "'test', :t)"
        ),
        {"t": AS_OF},
    )


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
        insert_one_order(conn)
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


def test_two_lanes_build_every_missing_index_and_analyze_every_table(postgres_url, tmp_path):
    from dunning.db.bulk_fill import restore_in_two_lanes

    upgrade(postgres_url)
    path = tmp_path / "shop.jsonl"
    write_jsonl(list(generate_orders(200, merchants=3, seed=3, as_of=AS_OF)), path)
    run_sync(postgres_url, str(path), batch_size=100, as_of=AS_OF)
    engine = get_engine(postgres_url)
    with engine.begin() as conn:
        for name in SECONDARY:
            conn.execute(text(f"DROP INDEX {name}"))
    analyzed = text("SELECT DISTINCT tablename FROM pg_stats WHERE tablename = ANY(:t)")
    buyers_believed = text("SELECT reltuples FROM pg_class WHERE relname = 'buyers'")
    with engine.connect() as conn:
        assert conn.scalar(buyers_believed) == -1  # never analyzed (no index builds it)
    assert restore_in_two_lanes(engine, SYNCED_TABLES, changed=10**6) == len(SECONDARY)
    assert present(postgres_url) == SECONDARY
    with engine.connect() as conn:
        assert set(conn.scalars(analyzed, {"t": list(SYNCED_TABLES)})) == set(SYNCED_TABLES)
        assert conn.scalar(buyers_believed) == 200
    # Nothing missing, nothing stale: an hourly sync's finish does nothing here.
    assert restore_in_two_lanes(engine, SYNCED_TABLES, changed=0) == 0


def test_two_first_loads_at_once_wait_for_each_other(postgres_url):
    """Both see empty tables; the second waits for the first's lock instead of holding a
    read lock its DROP INDEX would wait for (a deadlock, seen with two syncs at once)."""
    import time

    upgrade(postgres_url)
    engine = get_engine(postgres_url)

    def first_load() -> None:
        with engine.begin() as conn:
            defer_indexes(conn, SYNCED_TABLES)
            time.sleep(0.05)

    for _ in range(5):
        at_once(first_load)
        with engine.begin() as conn:
            restore_indexes(conn, SYNCED_TABLES)
    assert present(postgres_url) == SECONDARY


# --- detection's first run: one transaction ------------------------------------------------

FILLED = ("cases", "case_history", "case_items")


_KEYS = text(
    "SELECT conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint "
    "WHERE contype = 'f' AND conrelid = ANY(CAST(:t AS regclass[]))"
)


def keys_in(conn) -> set[tuple[str, str, bool]]:
    return {tuple(row) for row in conn.execute(_KEYS, {"t": list(FILLED)})}


def foreign_keys(url: str) -> set[tuple[str, str, bool]]:
    with get_engine(url).connect() as conn:
        return keys_in(conn)


def indexes(url: str) -> set[str]:
    with get_engine(url).connect() as conn:
        return set(
            conn.scalars(
                text("SELECT indexname FROM pg_indexes WHERE tablename = ANY(:t)"),
                {"t": list(FILLED)},
            )
        )


def emptied(url: str) -> None:
    with get_engine(url).begin() as conn:
        for table in ("case_items", "case_history", "detect_marks", "cases"):
            conn.execute(text(f"DELETE FROM {table}"))


def test_a_first_detection_ends_with_every_key_and_index_it_dropped(
    postgres_url, tmp_path, monkeypatch
):
    import dunning.tasks.detect as detect_module
    from dunning.config import get_settings
    from dunning.tasks.detect import FIRST_FILL_TABLES, detect_cases_core

    assert FIRST_FILL_TABLES == FILLED
    upgrade(postgres_url)
    keys, names = foreign_keys(postgres_url), indexes(postgres_url)
    assert {"fk_cases_order_id_orders", "fk_case_items_case_id_cases"} <= {k[0] for k in keys}
    assert {"ix_cases_state_next_step_at", "ix_case_history_case_id"} <= names
    path = tmp_path / "shop.jsonl"
    write_jsonl(list(generate_orders(300, merchants=3, seed=7, as_of=AS_OF)), path)
    run_sync(postgres_url, str(path), batch_size=100, as_of=AS_OF)

    filled: list[bool] = []
    real = detect_module.first_fill

    @contextmanager
    def watched(conn, tables, rows_from=None):
        with real(conn, tables, rows_from) as filling:
            filled.append(filling)
            yield filling

    monkeypatch.setattr(detect_module, "first_fill", watched)
    monkeypatch.setattr(detect_module, "FIRST_FILL_FROM", 1)  # 300 orders are many here
    # One shard of two does not: its locks would hold up the other shard's detection.
    detect_cases_core(postgres_url, AS_OF, get_settings(), shard=1, shards=2, full=True)
    assert filled == [] and foreign_keys(postgres_url) == keys
    emptied(postgres_url)  # for the unsharded run
    opened = detect_cases_core(postgres_url, AS_OF, get_settings(), full=True)["new_cases"]
    assert filled == [True] and opened > 0
    assert foreign_keys(postgres_url) == keys  # the same keys, validated
    assert indexes(postgres_url) == names
    # The fill inserts without ON CONFLICT: it opens what a run with every index opens.
    filled_rows = case_rows(postgres_url)
    emptied(postgres_url)
    monkeypatch.setattr(detect_module, "FIRST_FILL_FROM", 10**9)
    assert detect_cases_core(postgres_url, AS_OF, get_settings(), full=True)["new_cases"] == opened
    assert filled == [True, False]
    assert case_rows(postgres_url) == filled_rows


def test_a_failed_first_fill_leaves_the_schema_as_it_was(postgres_url):
    from dunning.db.bulk_fill import first_fill

    upgrade(postgres_url)
    keys, names = foreign_keys(postgres_url), indexes(postgres_url)
    engine = get_engine(postgres_url)
    with pytest.raises(RuntimeError), engine.begin() as conn, first_fill(conn, FILLED) as filling:
        assert filling
        assert keys_in(conn) == set()
        raise RuntimeError("the fill died")
    assert foreign_keys(postgres_url) == keys
    assert indexes(postgres_url) == names


_OPEN_CASE = text(
    "INSERT INTO cases (order_id, merchant_id, kind, state, dunning_option, "
    "currency, opened_at, default_date, principal_amount, fees_amount, "
    "interest_amount, cancellation_costs, paid_amount, partner_paid_amount, "
    "outstanding_amount, updated_at) VALUES ('o1', 'm1', 'overdue', "
    "'awaiting_approval', 'dunning', 'EUR', :t, '2026-02-01', 9, 0, 0, 0, 0, 0, 9, :t)"
)


def test_a_first_fill_checks_its_unique_keys_when_it_builds_them(postgres_url):
    """Inside the block the unique indexes are gone too (the filler inserts without ON
    CONFLICT); a duplicate fails the block when they are built, and nothing of it stays."""
    import psycopg
    from sqlalchemy.exc import IntegrityError

    from dunning.db.bulk_fill import first_fill

    upgrade(postgres_url)
    engine = get_engine(postgres_url)
    with engine.begin() as conn:
        insert_one_order(conn)
    names = indexes(postgres_url)
    assert {"uq_cases_open_order", "uq_case_items_case_item"} <= names
    with (
        pytest.raises(IntegrityError) as failed,
        engine.begin() as conn,
        first_fill(conn, FILLED) as filling,
    ):
        assert filling
        inside = set(
            conn.scalars(
                text("SELECT indexname FROM pg_indexes WHERE tablename = ANY(:t)"),
                {"t": list(FILLED)},
            )
        )
        assert inside == {"pk_cases", "pk_case_history", "pk_case_items"}
        conn.execute(_OPEN_CASE, {"t": AS_OF})
        conn.execute(_OPEN_CASE, {"t": AS_OF})  # a second open case of the order
    assert isinstance(failed.value.orig, psycopg.errors.UniqueViolation)
    assert "uq_cases_open_order" in str(failed.value)
    assert indexes(postgres_url) == names
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT COUNT(*) FROM cases")) == 0


def test_a_fill_of_tables_that_hold_rows_drops_nothing(postgres_url):
    from dunning.db.bulk_fill import first_fill

    upgrade(postgres_url)
    engine = get_engine(postgres_url)
    with engine.begin() as conn:
        insert_one_order(conn)
        conn.execute(_OPEN_CASE, {"t": AS_OF})
    keys, names = foreign_keys(postgres_url), indexes(postgres_url)
    with engine.begin() as conn, first_fill(conn, FILLED) as filling:
        assert not filling
        assert keys_in(conn) == keys
    assert indexes(postgres_url) == names
