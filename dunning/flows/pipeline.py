"""The parent flow `dunning run`: sync -> detect -> handover -> escalate -> refresh.

Each step is its own subflow, so the Prefect UI shows them as children of one run; `as_of`
is resolved once here and passed down, so every step sees the same moment. At the end the
run leaves what operators look at: a summary, the cases that need a human, and one event
per case transition for automations.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger

from dunning.config import get_settings
from dunning.db import ensure_schema
from dunning.flows import artifacts
from dunning.flows.cases import apply_handover_rules, detect_cases
from dunning.flows.escalate import escalate_cases
from dunning.flows.report import refresh_reporting
from dunning.flows.sync import sync_orders
from dunning.models.sharding import check_shard

# Above this many transitions in one run, events would flood the server: one summary
# event `dunning.run.transitions` stands for them, and the history table has each one.
MAX_CASE_EVENTS = 2000


@flow(
    name="dunning-run",
    flow_run_name=artifacts.flow_run_namer("dunning-run"),
    description="Sync orders, detect cases, route them, escalate due cases, refresh the board.",
    log_prints=False,
)
def dunning_run(
    as_of: datetime | None = None,
    full: bool = False,
    shard: int | None = None,
    shards: int = 1,
    escalate: bool = True,
) -> dict[str, Any]:
    """One run of the whole pipeline as of `as_of` (default: now)."""
    check_shard(shard, shards)
    as_of = (as_of or datetime.now(UTC)).astimezone(UTC)
    # Issues 9 and 19: the database and the source come from the settings, never from run
    # parameters: those are stored and shown by the Prefect server, and whoever may start
    # a run must not point the worker (and its secrets) elsewhere.
    url = get_settings().database_url
    ensure_schema(url)
    since = artifacts.current_history_id(url)
    common: dict[str, Any] = {"as_of": as_of, "shard": shard, "shards": shards}
    summary: dict[str, Any] = {"as_of": as_of.isoformat()}

    summary["sync"] = sync_orders(full=full, **common)
    summary["detect"] = detect_cases(full=full, **common)
    summary["handover"] = apply_handover_rules(**common)
    if escalate:
        summary["escalate"] = escalate_cases(**common)
    summary["report"] = refresh_reporting(**common)

    artifacts.publish_run_summary(url, since, extra_counts=_counts(summary))
    artifacts.publish_needs_human(url)
    summary["events"] = artifacts.emit_case_events(url, since, limit=MAX_CASE_EVENTS)
    get_run_logger().info("dunning run as of %s: %s", as_of.isoformat(), _counts(summary))
    return summary


def pipeline_core(
    as_of: datetime,
    database_url: str,
    source: str | None = None,
    shard: int | None = None,
    shards: int = 1,
) -> dict[str, Any]:
    """The same steps as `dunning_run`, as plain functions: no Prefect, no artifacts.

    For simulations and benchmarks that run the pipeline many times in one process.
    """
    from dunning.tasks.detect import detect_cases_core
    from dunning.tasks.escalate import run_escalation
    from dunning.tasks.handover import apply_handover_core
    from dunning.tasks.report import refresh_reporting_core
    from dunning.tasks.sync_run import run_sync

    settings = get_settings()
    scope = {"shard": shard, "shards": shards}
    ensure_schema(database_url)
    return {
        "sync": run_sync(database_url, source, as_of=as_of, **scope),
        "detect": detect_cases_core(database_url, as_of, settings, **scope),
        "handover": apply_handover_core(database_url, as_of, settings, **scope),
        "escalate": run_escalation(as_of, database_url, settings=settings, **scope),
        "report": refresh_reporting_core(as_of, database_url, **scope),
    }


def _counts(summary: dict[str, Any]) -> dict[str, Any]:
    """The numbers of each step, flat, for the log line and the summary artifact."""
    flat: dict[str, Any] = {}
    for step, value in summary.items():
        if isinstance(value, dict):
            for key, number in value.items():
                if isinstance(number, int | float | str) and not isinstance(number, bool):
                    flat[f"{step}.{key}"] = number
    return flat
