"""Escalation: claim the due steps batch by batch, perform the outside effects of each batch
while the next is claimed, record the outcomes (SPEC §3, §4). Claiming is in
`claim_steps`, the payments settled before it in `settle`. `run_escalation` is the run
without Prefect (tests, CLI, benchmark); the flow `dunning/flows/escalate.py` runs the same
three steps as task runs: partner updates, payments, advance."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from dunning.config import Settings, get_settings
from dunning.crashpoints import crashpoint
from dunning.db import ensure_schema, session_scope
from dunning.models.enums import ActionStatus
from dunning.models.ladder import MAIL_STEPS
from dunning.models.schema import Action
from dunning.models.sharding import check_shard
from dunning.tasks.call_partner import call_partner_and_source
from dunning.tasks.claim_steps import claim_batches
from dunning.tasks.escalation_rows import ACTIONS
from dunning.tasks.partner_sync import sync_partner_updates
from dunning.tasks.prefect_task import task
from dunning.tasks.send_mail import send_reminders
from dunning.tasks.settle import settle_payments
from dunning.tasks.step_outcomes import record_outcomes

log = logging.getLogger(__name__)

# Actions sent per round before their outcomes are recorded.
SEND_CHUNK = 2000


def load_actions(url: str, ids: Sequence[int]) -> list[Action]:
    out: list[Action] = []
    with session_scope(url) as s:
        for start in range(0, len(ids), 5000):
            out.extend(
                s.scalars(
                    select(Action)
                    .where(
                        Action.id.in_(ids[start : start + 5000]),
                        Action.status == ActionStatus.PENDING.value,
                    )
                    .order_by(Action.id)
                )
            )
    return out


def perform(
    url: str,
    action_ids: Sequence[int],
    as_of: datetime,
    settings: Settings,
    workers: int = 8,
    attempts: int = 4,
    base_delay: float = 0.2,
) -> Counter:
    """Send what this run claimed and record the outcomes batch by batch. E-mails and
    HTTP calls go side by side (two pipelines; never the same case in both)."""
    actions = load_actions(url, list(action_ids))
    mail_steps = tuple(st.value for st in MAIL_STEPS)
    mails = [a for a in actions if a.step in mail_steps]
    calls = [a for a in actions if a.step not in mail_steps]

    def pipeline(items: list[Action], send) -> Counter:
        stats: Counter = Counter()
        for start in range(0, len(items), SEND_CHUNK):
            chunk = items[start : start + SEND_CHUNK]
            try:
                results = send(chunk)
                record_outcomes(url, results, as_of)
            except BaseException:
                # Give the rest back at once: a retry of this task or the next run sends
                # it again, same key, instead of waiting for the lease to run out.
                release_leases(url, [a.id for a in items[start:]])
                raise
            stats.update(f"{r.step}:{r.status}" for r in results)
        return stats

    with ThreadPoolExecutor(max_workers=2) as pool:
        mail_stats = pool.submit(pipeline, mails, lambda c: send_reminders(c, settings, url=url))
        call_stats = pool.submit(
            pipeline,
            calls,
            lambda c: call_partner_and_source(c, settings, workers, attempts, base_delay, url),
        )
        return mail_stats.result() + call_stats.result()


def release_leases(url: str, action_ids: Sequence[int]) -> None:
    with session_scope(url) as s:
        ids = list(action_ids)
        for start in range(0, len(ids), 5000):
            s.execute(
                update(ACTIONS)
                .where(
                    ACTIONS.c.id.in_(ids[start : start + 5000]),
                    ACTIONS.c.status == ActionStatus.PENDING.value,
                )
                .values(lease_until=None)
            )


def advance(
    url: str,
    as_of: datetime,
    settings: Settings,
    shard: int | None = None,
    shards: int = 1,
    workers: int = 8,
    attempts: int = 4,
    base_delay: float = 0.2,
) -> dict[str, Any]:
    """Claim the due steps batch by batch and send each batch while the next is claimed."""
    stats: dict[str, Any] = {}
    claimed = 0
    performed: Counter = Counter()
    # Claim batch n+1 while batch n is being sent.
    with ThreadPoolExecutor(max_workers=1) as sender:
        futures = []
        for n, ids in enumerate(claim_batches(url, as_of, settings, shard, shards)):
            if ids:
                crashpoint("escalate.claimed")
                claimed += len(ids)
                futures.append(
                    sender.submit(perform, url, ids, as_of, settings, workers, attempts, base_delay)
                )
            if n == 1:
                # The first two batches (actions taken up again, notices to the partner)
                # may concern any case; the claims that follow lock their cases and could
                # wait on those outcomes while the outcomes wait on them (a deadlock seen on
                # PostgreSQL). Finish them first; the later batches are disjoint by case id.
                for future in futures:
                    performed += future.result()
                futures = []
        for future in futures:
            performed += future.result()
    stats["claimed"] = claimed
    stats["performed"] = dict(performed)
    return stats


__all__ = ["advance", "perform"]


@task(
    name="advance-due-cases",
    retries=2,
    retry_delay_seconds=[5, 30],
    persist_result=False,
    calls_outside=True,
)
def advance_task(url: str, as_of: datetime, shard: int | None, shards: int) -> dict[str, Any]:
    """Claim due steps and send them, batch by batch. A retry is safe: what was sent is
    done in the database; what was not is sent again under the same idempotency key."""
    return advance(url, as_of, get_settings(), shard, shards)


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
            stats["partner_sync"] = sync_partner_updates(url, as_of, settings)
        except TransientHTTPError as exc:  # the partner is down: steps go on, updates wait
            log.warning("partner updates not fetched: %s", exc)
            stats["partner_sync"] = {"error": str(exc)}
    stats["settle"] = settle_payments(url, as_of, shard, shards)
    stats.update(advance(url, as_of, settings, shard, shards, workers, attempts, base_delay))
    return stats
