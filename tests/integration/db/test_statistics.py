"""Planner statistics follow a run that rewrote a large part of a table (PostgreSQL).

Without them, the run after a first load planned lookups of a few thousand orders as full
scans, and escalation's claim of due cases (after handover moved every new case) as a
nested loop over all cases: seconds per statement at a million orders.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from dunning.db import ANALYZE_MIN_ROWS, get_engine, upgrade
from dunning.sample import generate_orders, write_jsonl
from dunning.tasks.sync_run import run_sync

pytestmark = pytest.mark.postgres
AS_OF = datetime(2026, 11, 26, 6, tzinfo=UTC)


def _believed(conn, table: str) -> float:
    return conn.scalar(text("SELECT reltuples FROM pg_class WHERE relname = :t"), {"t": table})


def test_refresh_statistics_only_after_a_large_change(postgres_url):
    from dunning.db import refresh_statistics

    with get_engine(postgres_url).begin() as conn:
        conn.execute(text("CREATE TABLE probe (id integer)"))
        conn.execute(text("INSERT INTO probe SELECT g FROM generate_series(1, 8000) g"))
        assert _believed(conn, "probe") < 0  # never analyzed
        # Few rows: left to autovacuum.
        assert not refresh_statistics(conn, ("probe",), ANALYZE_MIN_ROWS)
        assert _believed(conn, "probe") < 0
        assert refresh_statistics(conn, ("probe",), 8000)
        assert _believed(conn, "probe") == 8000
        # Over the minimum but under a tenth of what the statistics say: nothing to do.
        conn.execute(text("INSERT INTO probe SELECT g FROM generate_series(1, 72000) g"))
        assert refresh_statistics(conn, ("probe",), 72000)
        assert _believed(conn, "probe") == 80000
        assert not refresh_statistics(conn, ("probe",), 7000)


def test_a_large_first_sync_leaves_fresh_statistics(postgres_url, tmp_path):
    upgrade(postgres_url)
    path = tmp_path / "shop.jsonl"
    write_jsonl(generate_orders(ANALYZE_MIN_ROWS + 1000, merchants=5, seed=3, as_of=AS_OF), path)
    run_sync(postgres_url, str(path), as_of=AS_OF)
    with get_engine(postgres_url).connect() as conn:
        for table in ("orders", "buyers", "installments", "transactions"):
            rows = conn.scalar(text(f"SELECT count(*) FROM {table}"))
            assert _believed(conn, table) == pytest.approx(rows, rel=0.05), table
