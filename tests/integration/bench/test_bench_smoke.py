"""Issue 8 smoke test: a sharded run gives exactly the case rows of an unsharded one.

Correctness only, no timing: 20,000 generated orders through the pipeline flow without
escalation (sync -> detect -> handover -> report), once unsharded and once as two shard
processes at once (one Prefect API for all) on a second database; then
the changed snapshots (1 %) an hour later, incrementally, on both. The incremental run looks
only at what changed: a full detection and a full board rebuild afterwards must find nothing
different. `dunning bench` itself runs on a tiny shop and must write its phases to JSON.
"""

from __future__ import annotations

import json
import os

import pytest

from dunning.bench.config import BenchConfig
from dunning.bench.environment import BENCH_ENV, case_rows, create_database, drop_database
from dunning.bench.sample import write_sample
from dunning.config import get_settings
from dunning.db import upgrade
from dunning.flows.fanout import run_local_shard, run_shards_local
from dunning.tasks.detect import detect_cases_core
from dunning.tasks.report import refresh_report

ORDERS = int(os.environ.get("BENCH_SMOKE_ORDERS", "20000"))


@pytest.fixture
def bench_env(monkeypatch):
    for key, value in BENCH_ENV.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()


@pytest.fixture
def second_db(postgres_server):
    url = create_database(postgres_server, prefix="dunning_test_shard")
    yield url
    drop_database(postgres_server, url)


@pytest.mark.postgres
@pytest.mark.slow
def test_two_shards_make_the_same_case_rows_as_one(
    bench_env, postgres_url, second_db, postgres_server, prefect_harness, tmp_path
):
    cfg = BenchConfig(orders=ORDERS, merchants=40, changed_fraction=0.01, server_url="")
    cold, delta, n, changed, as_of_2 = write_sample(cfg, tmp_path)
    assert n == ORDERS and changed > 0
    upgrade(postgres_url)
    upgrade(second_db)

    one = run_local_shard(postgres_url, str(cold), cfg.as_of)
    two = run_shards_local(second_db, str(cold), cfg.as_of, 2)
    assert one["detect"]["new_cases"] > 0
    assert all(part["detect"]["new_cases"] > 0 for part in two), "a shard had no work"
    assert sum(part["sync"]["inserted"] for part in two) == one["sync"]["inserted"] == ORDERS
    assert sum(p["detect"]["new_cases"] for p in two) == one["detect"]["new_cases"]
    first = case_rows(postgres_url)
    assert len(first) > 1000
    assert case_rows(second_db) == first

    # the change an hour later, incrementally, on both
    run_local_shard(postgres_url, str(delta), as_of_2)
    run_shards_local(second_db, str(delta), as_of_2, 2)
    again = case_rows(postgres_url)
    assert again != first, "the change moved no case row"
    assert case_rows(second_db) == again

    # what the incremental run left equals what full scans make of the same data
    board = board_rows(postgres_url)
    assert detect_cases_core(postgres_url, as_of_2, get_settings(), full=True)["new_cases"] == 0
    assert case_rows(postgres_url) == again
    assert refresh_report(postgres_url, as_of_2, full=True).mode == "rebuild"
    assert board_rows(postgres_url) == board


def board_rows(url: str) -> list[tuple]:
    from sqlalchemy import select

    from dunning.db import get_engine
    from dunning.models.schema import REPORT_COLUMNS, CaseReport

    cols = [getattr(CaseReport, c) for c in REPORT_COLUMNS if c != "refreshed_at"]
    with get_engine(url).connect() as conn:
        return sorted(tuple(r) for r in conn.execute(select(*cols)))


@pytest.mark.postgres
@pytest.mark.slow
def test_bench_command_writes_its_phases(cli, postgres_server, tmp_path):
    out = tmp_path / "bench.json"
    result = cli(
        "bench",
        "--orders", "1500",
        "--merchants", "20",
        "--shards", "2",
        "--escalation-rounds", "1",
        "--escalation-steps", "20",  # shards of k > 2: round 1 also runs as 2 processes
        "--database-url", postgres_server,
        "--json", str(out),
        "--workdir", str(tmp_path),
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    data = json.loads(out.read_text())
    names = {(p["run"], p["name"]) for p in data["phases"]}
    for run in ("cold", "incremental", "next day"):
        assert {(run, "load"), (run, "detect"), (run, "handover"), (run, "report")} <= names
    assert ("cold", "parse+validate") in names and ("cold", "parse+validate+encode") in names
    assert ("escalation", "escalate r1") in names
    # the task runs each step started inside its dunning-run, read back from Prefect: every
    # step made some, and together they are the run's
    for run in ("cold", "incremental", "next day"):
        steps = [p for p in data["phases"] if p["run"] == run and not p["name"].startswith("parse")]
        assert all(p["task_runs"] >= 1 for p in steps), [(p["name"], p["task_runs"]) for p in steps]
        assert sum(p["task_runs"] for p in steps) == data["summary"]["task_runs_measured"][run]
    assert data["sharded"]["same_case_rows"] is True
    parallel = next(p for p in data["phases"] if p["name"] == "escalate r1, 2 processes")
    assert parallel["rows"] > 0
    assert sum(parallel["details"]["performed"].values()) == parallel["rows"]
    assert all(k.endswith(":done") for k in parallel["details"]["performed"])
    assert "as 2 shard processes" in result.stdout
    assert data["summary"]["ratio_to_baseline"] > 0
    assert data["machine"]["postgresql"]
    assert data["machine"]["pg_autovacuum"] in ("on", "off")
    assert "ratio" not in result.stderr
    assert "the baseline" in result.stdout


def test_bench_needs_postgres(cli, tmp_path):
    result = cli("bench", "--orders", "10", "--database-url", f"sqlite:///{tmp_path}/x.db")
    assert result.returncode == 2
    assert "needs PostgreSQL" in result.stderr
    assert "Traceback" not in result.stderr
