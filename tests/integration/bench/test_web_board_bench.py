"""bench/web_board.py, the web board's benchmark script, on a small board: it fills, times
every page and the CSV export, and drops its database (it had broken unnoticed once)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

SCRIPT = Path(__file__).resolve().parents[3] / "bench" / "web_board.py"


@pytest.mark.postgres
def test_the_web_board_benchmark_runs_on_a_small_board(postgres_server):
    spec = importlib.util.spec_from_file_location("web_board", SCRIPT)
    web_board = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(web_board)

    result = web_board.run(postgres_server, 2_000, runs=1, csv_runs=1, keep=False)

    assert result["cases"] == 2_000
    assert all(p["median_ms"] > 0 for p in result["pages"].values())
    assert result["csv_export"]["rows"] == 2_000 // web_board.MERCHANTS
    assert {"cpu", "cores", "postgresql", "load_1_5_15", "load_after"} <= set(result["machine"])
    assert "2,000 cases over 20 merchants" in web_board.markdown(result)
    admin = create_engine(postgres_server)
    with admin.connect() as conn:
        left = conn.execute(
            text("SELECT count(*) FROM pg_database WHERE datname = :n"), {"n": web_board.DB_NAME}
        ).scalar()
    admin.dispose()
    assert left == 0
