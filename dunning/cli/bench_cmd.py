"""`dunning bench`: the benchmark (dunning/bench/runner.py) from the command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from dunning.cli.common import UserError, console


def bench(
    orders: int = typer.Option(100_000, "--orders", min=1, help="Orders to generate."),
    merchants: int | None = typer.Option(
        None, "--merchants", min=1, help="Merchants (default: orders / 1000, at least 50)."
    ),
    changed_fraction: float = typer.Option(
        0.01, "--changed-fraction", min=0.0, max=1.0, help="Share of orders changed."
    ),
    database_url: str | None = typer.Option(
        None,
        "--database-url",
        help="A PostgreSQL URL; a fresh database is created on its server and dropped "
        "afterwards (the named database is not touched). Default: TEST_DATABASE_URL.",
    ),
    json_file: Path | None = typer.Option(None, "--json", help="Write the results here."),
    shards: int = typer.Option(
        1,
        "--shards",
        min=1,
        help="Also run the cold pipeline, and escalation round 1, as this many shard processes.",
    ),
    escalation_steps: int = typer.Option(
        10_000,
        "--escalation-steps",
        min=1,
        help="Due steps per escalation round (about); --escalation-rounds 0 skips escalation.",
    ),
    escalation_rounds: int = typer.Option(
        3, "--escalation-rounds", min=0, help="Rounds: reminder 1, reminder 2, handover."
    ),
    keep_database: bool = typer.Option(False, "--keep-database", help="Do not drop it."),
    shuffled: bool = typer.Option(
        False,
        "--shuffled",
        help="Write the orders in random order, not by order id: the loaded tables then "
        "hold their rows out of key order, as after a real export.",
    ),
    workdir: Path | None = typer.Option(
        None, "--workdir", help="Where the generated files go (a temporary folder in it)."
    ),
) -> None:
    """Benchmark the pipeline on a generated shop against a bare baseline, on PostgreSQL."""
    # The flows run here: Prefect's INFO lines would bury the table; a temporary server on a
    # busy machine needs longer than its default 20 s, and its telemetry prints a traceback.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from dunning.bench.config import BenchConfig
    from dunning.bench.results import render
    from dunning.bench.runner import run_bench

    server = database_url or os.environ.get("TEST_DATABASE_URL")
    if not server:
        raise UserError("need a PostgreSQL server: --database-url URL or TEST_DATABASE_URL")
    if not server.startswith(("postgresql", "postgres://")):
        raise UserError(f"the benchmark needs PostgreSQL, not {server.split(':', 1)[0]}")
    if json_file is not None and not json_file.parent.exists():
        raise UserError(f"folder of --json does not exist: {json_file.parent}")
    cfg = BenchConfig(
        orders=orders,
        merchants=merchants or max(50, orders // 1000),
        changed_fraction=changed_fraction,
        server_url=server,
        shards=shards,
        escalation_steps=escalation_steps,
        escalation_rounds=escalation_rounds,
        keep_database=keep_database,
        shuffled=shuffled,
        workdir=workdir,
    )
    try:
        result = run_bench(cfg, log=lambda line: console.print(line, style="dim"))
    except Exception as exc:
        import psycopg

        if isinstance(exc, psycopg.OperationalError):
            raise UserError(f"PostgreSQL: {str(exc).strip().splitlines()[0]}") from None
        raise
    console.print(render(result))
    s = result["summary"]
    b = result["baseline"]
    console.print(
        f"baseline {b['total_seconds']:.1f} s; cold pipeline {s['cold_pipeline_seconds']:.1f} s "
        f"= [bold]{s['ratio_to_baseline']:.2f}x[/] the baseline; sync "
        f"{s['cold_sync_orders_per_s']:,.0f} orders/s; "
        f"incremental (next hour) {s['incremental_seconds']:.2f} s, "
        f"first run of the next day {s['next_day_seconds']:.2f} s; "
        f"task runs (cold) {s['task_runs_cold']}; peak RSS {s['peak_rss_mib']:.0f} MiB",
        markup=True,
    )
    if "escalation_seconds_per_10k" in s:
        console.print(
            f"escalation {s['escalation_steps_per_s']:.0f} steps/s "
            f"(10,000 steps ~ {s['escalation_seconds_per_10k']} s)"
        )
    if "escalation_seconds_per_10k_sharded" in s:
        console.print(
            f"escalation round 1 as {shards} shard processes: 10,000 steps ~ "
            f"{s['escalation_seconds_per_10k_sharded']} s"
        )
    if "sharded" in result:
        sh = result["sharded"]
        console.print(
            f"{sh['shards']} shards at once: {sh['wall_seconds']:.1f} s wall vs "
            f"{sh['unsharded_cold_seconds']:.1f} s unsharded; same case rows: "
            f"{sh['same_case_rows']}"
        )
    console.print(f"machine: {result['machine']}", highlight=False)
    if json_file is not None:
        json_file.write_text(json.dumps(result, indent=2, default=str) + "\n")
        console.print(f"results written to {json_file}")
