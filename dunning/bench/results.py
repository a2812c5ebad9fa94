"""The benchmark's results: the summary of the JSON file and the table on the console.

The JSON keeps its keys from run to run (bench/README.md and bench/results/ compare them):
config, started_at, machine, generate_seconds, baseline, summary, phases, sharded,
finished_at. Task runs are read from Prefect: per phase `task_runs`, per pipeline run
`summary.task_runs_measured`.
"""

from __future__ import annotations

from typing import Any

from dunning.bench.phases import Phase, PipelineRun

TASK_RUNS_NOTE = (
    "read from Prefect: the task runs each phase's step started in its dunning-run "
    "(escalation: its flow run's); task_runs_cold is the cold dunning-run's "
    "(it runs without the escalate step, which the escalation rounds measure)"
)


def pipeline_summary(
    cold: PipelineRun,
    incremental: PipelineRun,
    next_day: PipelineRun,
    baseline_seconds: float,
    counted: dict[str, int],
    phases: list[Phase],
) -> dict[str, Any]:
    cold_total = sum(p.seconds for p in cold.phases)
    return {
        "cold_pipeline_seconds": round(cold_total, 2),
        "cold_sync_orders_per_s": round(cold.phases[0].rows_per_s, 1),
        "ratio_to_baseline": round(cold_total / baseline_seconds, 2),
        "incremental_seconds": round(sum(p.seconds for p in incremental.phases), 2),
        "next_day_seconds": round(sum(p.seconds for p in next_day.phases), 2),
        "task_runs_cold": counted.get("cold", 0),
        "task_runs_measured": counted,
        "flow_run_seconds": {
            "cold": round(cold.seconds, 2),
            "incremental": round(incremental.seconds, 2),
            "next day": round(next_day.seconds, 2),
        },
        "peak_rss_mib": round(max(p.peak_rss_mib for p in phases), 1),
    }


def render(result: dict[str, Any]):
    """A Rich table of the phases plus the summary lines."""
    from rich.table import Table

    table = Table(title=f"dunning bench: {result['config']['orders']:,} orders")
    for col in ("run", "phase", "seconds", "rows", "rows/s", "peak RSS MiB", "task runs"):
        table.add_column(col, justify="left" if col in ("run", "phase") else "right")
    for p in result["phases"]:
        table.add_row(
            p["run"],
            p["name"],
            f"{p['seconds']:.2f}",
            f"{p['rows']:,}",
            f"{p['rows_per_s']:,.0f}",
            f"{p['peak_rss_mib']:.0f}",
            str(p["task_runs"]),
        )
    return table
