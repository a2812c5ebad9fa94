"""Escalation rounds: the pipeline's escalate step alone, against the local partner server and
an SMTP sink, as of later days, so that reminders and then handovers fall due.

Each round runs the `escalate` step of the pipeline's composition (`step_named`) as the flow
deployed alone, a flow run of its own, on one shard of k, k chosen from the due count so
that a round takes about `target_steps` steps; with more than one process, round 1 runs
once more as that many shard processes at once on other cases.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from dunning.bench.environment import BENCH_ENV, LocalServers, at_once, peak_rss_mib
from dunning.bench.phases import Phase, timed
from dunning.bench.task_runs import TaskRunLedger


def due_by_shard(url: str, as_of: datetime, shards: int) -> list[int]:
    from sqlalchemy import text

    from dunning.db import get_engine

    sql = text(
        "SELECT m.shard_key % :k, COUNT(*) FROM cases c JOIN merchants m USING (merchant_id) "
        "WHERE c.state IN ('scheduled', 'reminder_1', 'reminder_2') AND c.next_step_at <= :t "
        "GROUP BY 1"
    )
    counts = [0] * shards
    with get_engine(url).connect() as conn:
        for key, n in conn.execute(sql, {"k": shards, "t": as_of}):
            counts[int(key)] = int(n)
    return counts


def escalation_rounds(
    api: str,
    url: str,
    start: datetime,
    target_steps: int,
    rounds: int,
    ledger: TaskRunLedger,
    processes: int = 1,
) -> list[Phase]:
    """Rounds `reminder_2_days`+1 days apart on one shard of k with ~`target_steps` due.
    With `processes` > 1, round 1 again on other cases as that many shard processes at
    once (see parallel_round). The database is the one the settings name (`url`)."""
    from dunning.config import configured
    from dunning.flows.pipeline import step_named

    escalate = step_named("escalate")
    with (
        LocalServers() as servers,
        configured(smtp_url=servers.smtp_url, partner_url=servers.partner_url) as cfg,
    ):
        # Shard of the first round fixed for all rounds: the same cases walk up the ladder.
        total = sum(due_by_shard(url, start, 1))
        k = max(1, round(total / target_steps)) if target_steps > 0 else 1
        phases = []
        gap = timedelta(days=max(cfg.default_reminder_1_days, cfg.default_reminder_2_days) + 1)
        for n in range(rounds):
            as_of = start + n * gap
            due = due_by_shard(url, as_of, k)[0]
            p, state = timed(
                "escalation",
                f"escalate r{n + 1}",
                lambda as_of=as_of: escalate.flow(
                    as_of=as_of, shard=0, shards=k, return_state=True
                ),
                lambda state: state.result().get("claimed", 0),
            )
            ledger.phase(p, state.state_details.flow_run_id)
            p.details = {
                "as_of": as_of.isoformat(),
                "shard": f"0/{k}",
                "due_before": due,
                "performed": state.result().get("performed", {}),
                "flow": escalate.flow.name,
            }
            phases.append(p)
            if n == 0 and processes > 1:
                phases += parallel_round(api, as_of, k, processes, ledger)
    return phases


def _escalation_worker(api: str, as_of: datetime, shard: int, shards: int, q, go) -> None:
    """One shard's escalate step; database, partner and mail from the settings (the
    environment this process was spawned with)."""
    os.environ.update(BENCH_ENV)
    try:
        from dunning.flows.pipeline import step_named
        from dunning.flows.prefect_api import using_prefect_api

        q.put(("ready", shard))
        go.wait()
        with using_prefect_api(api):
            state = step_named("escalate").flow(
                as_of=as_of, shard=shard, shards=shards, return_state=True
            )
        result = state.result()
        flow_run_id = str(state.state_details.flow_run_id)
        q.put((shard, result.get("claimed", 0), result.get("performed", {}), flow_run_id, None))
    except BaseException as exc:  # handed to the parent
        q.put((shard, 0, {}, None, repr(exc)))


def parallel_round(
    api: str, as_of: datetime, k: int, processes: int, ledger: TaskRunLedger
) -> list[Phase]:
    """Round 1 as `processes` shard processes at once (as n process workers would run the
    escalation flow's shards), on cases the single-process rounds never touch: shards
    1..P of P*k hold the cases of shards 1..P of k (never shard 0), together about as many
    as one shard of k. Needs k > P; skipped otherwise (a small shop)."""
    if k <= processes:
        return []
    shards = processes * k
    argsets = [(api, as_of, s, shards) for s in range(1, processes + 1)]
    wall, results = at_once(_escalation_worker, argsets)
    performed: Counter = Counter()
    for _, _, done, _, _ in results:
        performed.update(done)
    phase = Phase(
        "escalation",
        f"escalate r1, {processes} processes",
        wall,
        sum(claimed for _, claimed, _, _, _ in results),
        peak_rss_mib(),
        0,
        {
            "as_of": as_of.isoformat(),
            "shards": [f"{s}/{shards}" for s in range(1, processes + 1)],
            "performed": dict(performed),
            "note": "peak RSS is the parent's; each process has its own",
        },
    )
    for *_, flow_run_id, _ in results:
        ledger.phase(phase, flow_run_id)
    return [phase]


def escalation_summary(esc: list[Phase]) -> dict[str, Any]:
    """Steps per second of the single-process rounds, seconds per 10,000 steps of both."""
    single = [p for p in esc if "processes" not in p.name]
    steps = sum(p.rows for p in single)
    secs = sum(p.seconds for p in single)
    out: dict[str, Any] = {
        "escalation_steps_per_s": round(steps / secs, 1) if secs else 0,
        "escalation_seconds_per_10k": round(10_000 * secs / steps, 1) if steps else None,
    }
    for p in esc:
        if p not in single and p.rows:
            out["escalation_seconds_per_10k_sharded"] = round(10_000 * p.seconds / p.rows, 1)
    return out
