"""Case flows: detect cases, apply the handover rules, and an operator's action on one case.

Orchestration only; the tasks and the plain-Python cores they wrap (which the CLI and tests
call directly) are in `dunning.tasks.detect`, `dunning.tasks.handover` and
`dunning.tasks.case_ops`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from prefect import flow, get_run_logger

from dunning.config import get_settings
from dunning.db import ensure_schema
from dunning.flows.artifacts import flow_run_namer
from dunning.models.sharding import check_shard
from dunning.tasks.case_ops import case_action_task
from dunning.tasks.detect import detect_task
from dunning.tasks.handover import handover_task


def _resolve(as_of: datetime | None) -> tuple[datetime, str]:
    url = get_settings().database_url  # configuration, never a run parameter (issue 19)
    ensure_schema(url)
    return (as_of or datetime.now(UTC)).astimezone(UTC), url


@flow(name="detect-cases", flow_run_name=flow_run_namer("detect-cases"), log_prints=False)
def detect_cases(
    as_of: datetime | None = None,
    shard: int | None = None,
    shards: int = 1,
    full: bool = False,
) -> dict[str, Any]:
    """Open cases for overdue installments and chargebacks; update and close open ones."""
    check_shard(shard, shards)
    as_of, url = _resolve(as_of)
    counts = detect_task(url, as_of, shard, shards, full)
    get_run_logger().info("detection (%s): %s", counts.get("mode"), counts)
    return counts


@flow(
    name="apply-handover-rules",
    flow_run_name=flow_run_namer("apply-handover-rules"),
    log_prints=False,
)
def apply_handover_rules(
    as_of: datetime | None = None,
    shard: int | None = None,
    shards: int = 1,
) -> dict[str, int]:
    """Route new cases (ladder, approval, blocked) and re-check blocked ones."""
    check_shard(shard, shards)
    as_of, url = _resolve(as_of)
    counts = handover_task(url, as_of, shard, shards)
    get_run_logger().info("handover rules: %s", counts)
    return counts


@flow(
    name="case-action",
    flow_run_name="case {action} {case_or_order_id} by {operator}",
    log_prints=False,
)
def case_action(
    action: Literal["start", "cancel", "hold", "resume", "confirm-cancellation"],
    case_or_order_id: str,
    reason: str,
    operator: str = "operator",
    as_of: datetime | None = None,
) -> dict[str, Any]:
    """An operator starts, cancels, holds or resumes a case; a refusal fails the run with
    the reason (e.g. "case 17 is paid; nothing to cancel")."""
    as_of, url = _resolve(as_of)
    result = case_action_task(action, str(case_or_order_id), reason, operator, as_of, url)
    get_run_logger().info(
        "case %s: %s -> %s (%s)",
        result["case_id"],
        result["from_state"],
        result["to_state"],
        operator,
    )
    return result
