"""Flow `escalate_cases`: partner updates, payments, then one ladder step per due case.

The work lives in dunning/tasks/ (plain Python: `settle`, `claim_steps`, `escalate`);
`run_escalation` here assembles it without Prefect, the flow adds retries where it calls
outside, logging and an artifact.
Retrying a task is safe: what was sent is marked done in the database, what was not is
sent again under the same idempotency key.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dunning.config import Settings, get_settings
from dunning.db import ensure_schema
from dunning.flows.artifacts import flow_run_namer
from dunning.models.sharding import check_shard
from dunning.tasks.escalate import advance
from dunning.tasks.settle import settle_payments

log = logging.getLogger(__name__)


def run_escalation(
    as_of: datetime | None = None,
    database_url: str | None = None,
    shard: int | None = None,
    shards: int = 1,
    settings: Settings | None = None,
    *,
    sync_partner: bool = True,
    workers: int = 8,
    attempts: int = 4,
    base_delay: float = 0.2,
) -> dict[str, Any]:
    """What the flow does, without Prefect (tests, the CLI, the benchmark): partner updates,
    payments, then claim, send and record the due steps. Returns counters."""
    check_shard(shard, shards)
    settings = settings or get_settings()
    url = database_url or settings.database_url
    as_of = as_of or datetime.now(UTC)
    ensure_schema(url)
    stats: dict[str, Any] = {}
    if sync_partner:
        from dunning.tasks.http_client import TransientHTTPError

        try:
            stats["partner_sync"] = core_sync(url, as_of, settings)
        except TransientHTTPError as exc:  # the partner is down: steps go on, updates wait
            log.warning("partner updates not fetched: %s", exc)
            stats["partner_sync"] = {"error": str(exc)}
    stats["settle"] = settle_payments(url, as_of, shard, shards)
    stats.update(advance(url, as_of, settings, shard, shards, workers, attempts, base_delay))
    return stats


def core_sync(url: str, as_of: datetime, settings: Settings) -> dict[str, int]:
    from dunning.tasks.partner_sync import sync_partner_updates

    return sync_partner_updates(url, as_of, settings)


# Tasks that hold a token (partner, source, mail): no result is written to Prefect's
# storage (issue 19); their errors carry method, URL and status only (http_client.py).
@task(
    name="sync-partner-updates",
    retries=2,
    retry_delay_seconds=[2, 10],
    cache_policy=NO_CACHE,
    persist_result=False,
    tags=["outside"],
)
def sync_partner_task(url: str, as_of: datetime) -> dict[str, Any]:
    """Partner updates. An unreachable partner (already retried with backoff by the HTTP
    client), one that refuses the token or pages without end is a warning, not a failure:
    the steps go on, the updates come next run."""
    from dunning.tasks.http_client import TransientHTTPError

    try:
        return core_sync(url, as_of, get_settings())
    except TransientHTTPError as exc:
        get_run_logger().warning("partner updates not fetched this run (%s); steps go on", exc)
        return {"error": str(exc)}


@task(name="settle-payments", cache_policy=NO_CACHE)
def settle_task(url: str, as_of: datetime, shard: int | None, shards: int) -> dict[str, int]:
    return settle_payments(url, as_of, shard, shards)


@task(
    name="advance-due-cases",
    retries=2,
    retry_delay_seconds=[5, 30],
    cache_policy=NO_CACHE,
    persist_result=False,
    tags=["outside"],
)
def advance_task(url: str, as_of: datetime, shard: int | None, shards: int) -> dict[str, Any]:
    """Claim due steps and send them, batch by batch. A retry is safe: what was sent is
    done in the database; what was not is sent again under the same idempotency key."""
    return advance(url, as_of, get_settings(), shard, shards)


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
    """Advance every due case one step: reminders, handover, court or cancellation."""
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
