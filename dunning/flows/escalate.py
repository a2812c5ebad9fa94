"""Flow `escalate_cases`: partner updates, payments, then one ladder step per due case.

The tasks and the work live in dunning/tasks/ (`partner_sync`, `settle`, `escalate`, where
`run_escalation` is the same run without Prefect); the flow orders them, logs, and leaves
an artifact and an event.
Retrying a task is safe: what was sent is marked done in the database, what was not is
sent again under the same idempotency key.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger

from dunning.config import Settings, get_settings
from dunning.db import ensure_schema
from dunning.flows.artifacts import flow_run_namer
from dunning.models.sharding import check_shard
from dunning.tasks.escalate import advance_task
from dunning.tasks.partner_sync import sync_partner_task
from dunning.tasks.settle import settle_task

log = logging.getLogger(__name__)


def _warn_stale_base_rates(claims: int, as_of: datetime, settings: Settings) -> None:
    """Interest ran past the base-rate table's known end: said in the log and as an event
    an automation can turn into a notification."""
    from prefect.events import emit_event

    from dunning.models.base_rates import base_rates

    known = base_rates(settings.base_rates_file).known_until.isoformat()
    get_run_logger().warning(
        "interest of %d claims uses the last known base rate past %s: extend the table "
        "(DUNNING_BASE_RATES_FILE)",
        claims,
        known,
    )
    emit_event(
        event="dunning.base-rates.stale",
        resource={"prefect.resource.id": "dunning.base-rates"},
        payload={"claims": claims, "known_until": known, "as_of": as_of.isoformat()},
    )


@flow(name="escalate-cases", flow_run_name=flow_run_namer("escalate-cases"), log_prints=False)
def escalate_cases(
    as_of: datetime | None = None,
    shard: int | None = None,
    shards: int = 1,
) -> dict[str, Any]:
    """Advance every due case one step: reminders, handover, court or cancellation.

    Args:
        as_of: The moment the run counts as (ISO date-time with offset); empty means now.
        shard: Which shard of merchants this run handles (0 to shards-1); empty: all.
        shards: Into how many shards the merchants are split (1: no sharding).
    """
    check_shard(shard, shards)
    logger = get_run_logger()
    url = get_settings().database_url
    as_of = as_of or datetime.now(UTC)
    ensure_schema(url)
    stats: dict[str, Any] = {}
    stats["partner_sync"] = sync_partner_task(url, as_of)
    stats["settle"] = settle_task(url, as_of, shard, shards)
    stats.update(advance_task(url, as_of, shard, shards))
    waiting = sum(v for k, v in stats["performed"].items() if k.endswith(":transient"))
    failed = sum(v for k, v in stats["performed"].items() if k.endswith(":failed"))
    logger.info("escalation as of %s: %s", as_of.isoformat(), stats)
    if waiting:
        logger.warning(
            "%d steps wait for the next run (partner, source or mail unreachable)", waiting
        )
    if failed:
        logger.warning("%d steps refused permanently; see cases.partner_error", failed)
    stale = stats["settle"].get("interest_past_known_base_rates", 0)
    if stale:
        _warn_stale_base_rates(stale, as_of, get_settings())
    try:
        from prefect.artifacts import create_table_artifact

        create_table_artifact(
            key="escalation",
            table=[{"outcome": k, "count": v} for k, v in sorted(stats["performed"].items())],
            description=f"Escalation as of {as_of.isoformat()}",
        )
    except Exception:  # artifacts are a nicety; never fail the run for one
        logger.debug("no artifact", exc_info=True)
    return stats
