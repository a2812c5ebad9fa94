"""Case flows: detect cases, apply the handover rules, and an operator's action on one case.

Orchestration only; the tasks and the plain-Python cores they wrap (which the CLI and tests
call directly) are in `dunning.tasks.detect`, `dunning.tasks.handover` and
`dunning.tasks.case_ops`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.states import Completed, State

from dunning.config import get_settings
from dunning.db import ensure_schema
from dunning.flows.artifacts import EVENT_NAMESPACE, flow_run_namer
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
    """Open cases for overdue installments and chargebacks, each routed by the handover
    rules (ladder, approval, blocked); update and close open ones."""
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
    """Re-check blocked cases (a newer snapshot may complete the address) and route any new
    case left unrouted (ladder, approval, blocked)."""
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
) -> dict[str, Any] | State:
    """An operator starts, cancels, holds or resumes a case. The case's board row is current
    when the run ends, and the transition emits `dunning.case.<to_state>`. A refusal is an
    answer, not an outage: the run ends Completed, named "Refused", with the reason as its
    message (e.g. "case 17 is paid; nothing to cancel").

    Args:
        action: What to do with the case.
        case_or_order_id: The case number, or the order id of its open case.
        reason: Why (kept in the case's history).
        operator: Who acts, kept in the history: your name (the form cannot know it).
        as_of: When the action counts; empty means now.
    """
    as_of, url = _resolve(as_of)
    result = case_action_task(action, str(case_or_order_id), reason, operator, as_of, url)
    logger = get_run_logger()
    if "refused" in result:
        logger.info("refused: %s", result["refused"])
        return Completed(message=result["refused"], name="Refused", data=result)
    logger.info(
        "case %s: %s -> %s (%s)",
        result["case_id"],
        result["from_state"],
        result["to_state"],
        operator,
    )
    emit_action_event(result, reason, operator, as_of)
    return result


def emit_action_event(result: dict[str, Any], reason: str, operator: str, as_of: datetime) -> None:
    """`dunning.case.<to_state>` for an operator's transition, as the pipeline's (see
    `emit_case_events`), with the actor and the reason in the payload. The event id derives
    from the flow run, so a retried run does not emit it twice."""
    import uuid

    from prefect.events import emit_event
    from prefect.runtime import flow_run

    run_id = flow_run.id
    related = [
        {
            "prefect.resource.id": f"dunning.merchant.{result['merchant_id']}",
            "prefect.resource.role": "merchant",
        }
    ]
    if run_id:
        related.append(
            {
                "prefect.resource.id": f"prefect.flow-run.{run_id}",
                "prefect.resource.role": "flow-run",
            }
        )
    emit_event(
        event=f"dunning.case.{result['to_state']}",
        resource={
            "prefect.resource.id": f"dunning.case.{result['case_id']}",
            "prefect.resource.name": f"case {result['case_id']}",
            "dunning.merchant_id": result["merchant_id"],
        },
        related=related,
        payload={
            "at": as_of.isoformat(),
            "from_state": result["from_state"],
            "to_state": result["to_state"],
            "action": result["action"],
            "actor": operator,
            "reason": reason,
            "order_id": result["order_id"],
        },
        id=uuid.uuid5(EVENT_NAMESPACE, f"{run_id}:case-action") if run_id else None,
    )
