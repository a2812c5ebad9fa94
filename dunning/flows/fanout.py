"""`dunning_run_sharded`: one pipeline run per shard of merchants, on as many workers.

The parent resolves `as_of` once and starts `shards` runs of the `dunning-run-shard`
deployment (the `dunning_run` flow, without the concurrency limit of one that the scheduled
`dunning-run` deployment has, which would cancel all but the first shard) through
`run_deployment`, each with `shard=i, shards=n`. Every worker of the work pool can pick one
up, on this machine or another; they share one PostgreSQL without conflicts because every
flow only touches the merchants of its shard (`merchants.shard_key % shards = shard`). The
parent waits for all of them and fails if any shard failed, naming it.

`run_shards_local` does the same on this machine without a deployment: one OS process per
shard, each running `dunning_run` without escalation (`run_local_shard`), all reporting to
one Prefect API. The CI smoke test uses it; the benchmark runs `run_local_shard` in
processes of its own, to start them on one clock.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger

from dunning.flows.artifacts import flow_run_namer
from dunning.models.sharding import check_shard

SHARD_DEPLOYMENT = "dunning-run/dunning-run-shard"


@flow(
    name="dunning-run-sharded",
    flow_run_name=flow_run_namer("dunning-run-sharded"),
    description="Fan out one dunning-run per shard of merchants to the workers; wait for all.",
    log_prints=False,
)
def dunning_run_sharded(
    shards: int = 2,
    as_of: datetime | None = None,
    full: bool = False,
    escalate: bool = True,
    deployment: str = SHARD_DEPLOYMENT,
    timeout_seconds: float = 3600.0,
) -> dict[str, Any]:
    """Run the pipeline as `shards` shard runs of `deployment` at once; return their states.

    Args:
        shards: How many shard runs to start (start as many workers to run them side by side).
        as_of: The moment the run counts as (ISO date-time with offset); empty means now.
        full: Reload every order from the source instead of the changes since the last sync.
        escalate: Send the due reminders, handovers and court or cancellation steps.
        deployment: The shard deployment to run, as flow-name/deployment-name.
        timeout_seconds: How long to wait for all shard runs before giving up.
    """
    from prefect.deployments import run_deployment
    from prefect.flow_runs import wait_for_flow_run

    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    logger = get_run_logger()
    as_of = (as_of or datetime.now(UTC)).astimezone(UTC)
    common: dict[str, Any] = {"as_of": as_of.isoformat(), "full": full, "escalate": escalate}
    runs = []
    for shard in range(shards):
        check_shard(shard, shards)
        runs.append(
            run_deployment(
                deployment,
                parameters={**common, "shard": shard, "shards": shards},
                timeout=0,  # start them all, then wait
                as_subflow=True,
                tags=["dunning", f"shard-{shard}-of-{shards}"],
            )
        )
    logger.info("started %d shard runs of %s as of %s", shards, deployment, as_of.isoformat())
    deadline = time.monotonic() + timeout_seconds
    finished = []
    for shard, run in enumerate(runs):
        left = max(1.0, deadline - time.monotonic())
        done = wait_for_flow_run(run.id, timeout=int(left), log_states=False)
        finished.append((shard, done))
    states = {shard: done.state.type.value if done.state else "UNKNOWN" for shard, done in finished}
    failed = {s: st for s, st in states.items() if st != "COMPLETED"}
    if failed:
        raise RuntimeError(
            "shard run(s) did not complete: "
            + ", ".join(f"{s}/{shards} {st}" for s, st in sorted(failed.items()))
        )
    logger.info("all %d shards completed", shards)
    return {"as_of": as_of.isoformat(), "shards": shards, "states": states}


def run_local_shard(
    database_url: str,
    source: str,
    as_of: datetime,
    shard: int | None = None,
    shards: int = 1,
) -> dict[str, Any]:
    """One shard's pipeline run in this process: `dunning_run` without escalation, on the
    database and source given (this process's settings for the run's duration)."""
    from dunning.config import configured
    from dunning.flows.pipeline import dunning_run

    with configured(database_url=database_url, source_url=source):
        return dunning_run(as_of=as_of, shard=shard, shards=shards, escalate=False)


def _shard_process(prefect_api: str, *args: Any) -> dict[str, Any]:
    from dunning.flows.prefect_api import using_prefect_api

    with using_prefect_api(prefect_api):
        return run_local_shard(*args)


def run_shards_local(
    database_url: str, source: str, as_of: datetime, shards: int
) -> list[dict[str, Any]]:
    """`run_local_shard` for every shard at once, one process each (what n process workers
    do with the shard runs); their summaries in shard order."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from dunning.flows.prefect_api import shared_prefect_api

    context = get_context("spawn")
    with (
        shared_prefect_api() as api,
        ProcessPoolExecutor(max_workers=shards, mp_context=context) as pool,
    ):
        jobs = [
            pool.submit(_shard_process, api, database_url, source, as_of, shard, shards)
            for shard in range(shards)
        ]
        return [job.result() for job in jobs]
