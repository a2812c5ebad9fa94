"""`refresh_reporting`: rebuild the case board and record the last data update.

The task and its plain-Python core `refresh_reporting_core` (tests, CLI) are in
`dunning.tasks.report`; the flow adds a named run and a log line for operators.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger

from dunning.config import get_settings
from dunning.flows.artifacts import flow_run_namer
from dunning.models.sharding import check_shard
from dunning.tasks.report import rebuild_case_report


@flow(
    name="refresh-reporting",
    flow_run_name=flow_run_namer("refresh-reporting"),
    description="Rebuild the case board (case_report) in one transaction; record the refresh.",
)
def refresh_reporting(
    as_of: datetime | None = None,
    shard: int | None = None,
    shards: int = 1,
) -> dict[str, object]:
    """Rebuild the case board and record the refresh.

    Args:
        as_of: The moment the run counts as (ISO date-time with offset); empty means now.
        shard: Which shard of merchants this run handles (0 to shards-1); empty: all.
        shards: Into how many shards the merchants are split (1: no sharding).
    """
    check_shard(shard, shards)
    as_of = as_of or datetime.now(UTC)
    url = get_settings().database_url
    result = rebuild_case_report(as_of, url, shard, shards)
    get_run_logger().info(
        "case board refreshed: %d cases, %d snapshot rows for %s",
        result.cases,
        result.snapshot_rows,
        result.snapshot_date,
    )
    return {
        "cases": result.cases,
        "snapshot_rows": result.snapshot_rows,
        "snapshot_date": result.snapshot_date.isoformat(),
        "as_of": result.as_of.isoformat(),
    }
