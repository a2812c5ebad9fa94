"""`dunning bench`: the sample shop through the pipeline, phase by phase, beside a baseline.

One run, on a fresh PostgreSQL database of its own (created on the server the user named,
dropped at the end unless kept), with one Prefect API for all its flow runs (the one
configured, or a temporary local server keeping its runs in the temporary folder):

1. generate N orders of M merchants (cold file) and the changed snapshots of a fraction
   of them (delta file), in one pass, into a temporary folder (`sample`);
2. the bare baseline (`dunning.bench.baseline`) on the cold file: the yardstick;
3. parse+validate alone (no database): what the sync's reader costs in CPU; then the
   same with the rows encoded for COPY, as the cold load's workers do it;
4. cold run: `dunning_run` without escalation, each step timed (`phases`): load (sync),
   detect, handover, report;
5. incremental run on the delta file an hour later (the hourly schedule; the same local
   day);
6. the first run of the next day on the same delta (nothing new): what the day roll costs
   (installments falling due; the board rewrites only changed rows, the view counts the days);
7. escalation rounds (`escalation_rounds`): the escalate step against the local partner
   server and an SMTP sink, as of later days, bounded to about `escalation_steps` steps;
8. with `shards` > 1: the cold run again on a second fresh database, one OS process per
   shard at once; its case rows must equal those of the unsharded run.

Before the baseline, the cold run, the sharded run and the incremental run the machine is
settled (`sync`, `CHECKPOINT`): each starts without the previous phase's writes pending.
Each phase's task runs are read from Prefect at the end (`task_runs`). Peak RSS is this
process's (VmHWM, reset before each phase); the PostgreSQL server's memory is not included.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dunning.bench.config import BenchConfig
from dunning.bench.environment import (
    BENCH_ENV,
    case_rows,
    create_database,
    drop_database,
    libpq,
    machine_info,
    peak_rss_mib,
    reset_peak_rss,
    settle,
)
from dunning.bench.escalation_rounds import escalation_rounds, escalation_summary
from dunning.bench.phases import Phase, count_pipeline, pipeline_phases, run_sharded, timed
from dunning.bench.results import TASK_RUNS_NOTE, pipeline_summary
from dunning.bench.sample import parse_validate, write_sample
from dunning.bench.task_runs import TaskRunLedger


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    from dunning.config import configured, get_settings
    from dunning.flows.prefect_api import shared_prefect_api

    os.environ.update(BENCH_ENV)
    get_settings.cache_clear()
    tmp = tempfile.TemporaryDirectory(prefix="dunning-bench-", dir=cfg.workdir)
    folder = Path(tmp.name)
    result: dict[str, Any] = {
        "config": {
            "orders": cfg.orders,
            "merchants": cfg.merchants,
            "changed_fraction": cfg.changed_fraction,
            "shards": cfg.shards,
            "seed": cfg.seed,
            "shuffled": cfg.shuffled,
            "as_of": cfg.as_of.isoformat(),
            "task_runs": TASK_RUNS_NOTE,
        },
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    url = create_database(cfg.server_url)
    try:
        # The generated shops are read from the temporary folder; the flows find the
        # database in the settings.
        with (
            configured(source_root=str(folder), database_url=url),
            shared_prefect_api(folder / "prefect.db") as api,
        ):
            _run(cfg, url, folder, api, result, log)
        return result
    finally:
        tmp.cleanup()
        get_settings.cache_clear()
        if not cfg.keep_database:
            drop_database(cfg.server_url, url)
        else:
            result["database_url"] = url


def _run(
    cfg: BenchConfig,
    url: str,
    folder: Path,
    api: str,
    result: dict[str, Any],
    log: Callable[[str], None],
) -> None:
    from dunning.bench.baseline import run_baseline
    from dunning.db import upgrade

    ledger = TaskRunLedger()
    result["machine"] = machine_info(libpq(url))
    log(f"database {url.rsplit('/', 1)[-1]}; generating {cfg.orders:,} orders ...")
    started = time.perf_counter()
    cold, delta, n, changed, as_of_2 = write_sample(cfg, folder)
    result["generate_seconds"] = round(time.perf_counter() - started, 2)
    result["config"]["changed_orders"] = changed
    log(f"generated {n:,} orders, {changed:,} changed, in {result['generate_seconds']} s")

    phases: list[Phase] = []
    result["config"]["settled"] = settle(url)
    reset_peak_rss()
    base = run_baseline(cold, libpq(url), cfg.as_of.date())
    for name, seconds in base.seconds.items():
        rows = base.orders if name != "sql" else base.cases
        phases.append(Phase("baseline", name, seconds, rows, peak_rss_mib()))
    result["baseline"] = {
        "seconds": {k: round(v, 3) for k, v in base.seconds.items()},
        "total_seconds": round(base.total_seconds, 3),
        "orders": base.orders,
        "installments": base.installments,
        "transactions": base.transactions,
        "cases": base.cases,
    }
    log(f"baseline {base.total_seconds:.1f} s")

    p, _valid = timed("cold", "parse+validate", lambda: parse_validate(cold, cfg.as_of), int)
    p.details = {"note": "reader alone, no database; inside load it overlaps the writes"}
    e, _valid = timed(
        "cold", "parse+validate+encode", lambda: parse_validate(cold, cfg.as_of, "bench"), int
    )
    e.details = {"note": "as the load's workers do it: encoded for COPY, batches of 5,000"}
    phases += [p, e]
    log(f"parse+validate {p.seconds:.1f} s, with encoding for COPY {e.seconds:.1f} s")
    upgrade(url)
    settle(url)
    runs = {}
    runs["cold"] = pipeline_phases("cold", url, cold, cfg.as_of)
    _log_run(log, "cold", runs["cold"].phases)
    if cfg.shards > 1:
        result["sharded"] = _sharded(cfg, url, cold, api, ledger, runs["cold"].phases, log)
    settle(url)
    runs["incremental"] = pipeline_phases("incremental", url, delta, as_of_2)
    _log_run(log, "incremental", runs["incremental"].phases)
    runs["next day"] = pipeline_phases("next day", url, delta, cfg.as_of + timedelta(days=1))
    _log_run(log, "next day", runs["next day"].phases)
    for key, done in runs.items():
        count_pipeline(ledger, key, done)
        phases += done.phases
    esc: list[Phase] = []
    if cfg.escalation_rounds > 0:
        esc = escalation_rounds(
            api,
            url,
            cfg.as_of + timedelta(days=2),
            cfg.escalation_steps,
            cfg.escalation_rounds,
            ledger,
            processes=cfg.shards,
        )
        phases += esc
        log("escalation " + ", ".join(f"{p.rows} steps {p.seconds:.1f} s" for p in esc))

    log("reading the task runs from Prefect ...")
    ledger.fill()
    if "sharded" in result:
        for part in result["sharded"]["per_shard"].values():
            part["phases"] = [p.as_dict() for p in part["phases"]]
    result["summary"] = pipeline_summary(
        runs["cold"], runs["incremental"], runs["next day"], base.total_seconds,
        ledger.counted, phases,
    )  # fmt: skip
    if esc:
        result["summary"].update(escalation_summary(esc))
    result["phases"] = [p.as_dict() for p in phases]
    result["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")


def _log_run(log: Callable[[str], None], run: str, phases: list[Phase]) -> None:
    log(f"{run} " + ", ".join(f"{p.name} {p.seconds:.1f} s" for p in phases))


def _sharded(
    cfg: BenchConfig,
    url: str,
    cold: Path,
    api: str,
    ledger: TaskRunLedger,
    cold_phases: list[Phase],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """The same cold run as `shards` processes on a second database; its case rows must
    equal the unsharded run's (compared before the incremental run)."""
    cold_total = sum(p.seconds for p in cold_phases)
    sharded_url = create_database(cfg.server_url)
    try:
        log(f"sharded cold run: {cfg.shards} processes ...")
        settle(sharded_url)
        sharded = run_sharded(api, sharded_url, cold, cfg.as_of, cfg.shards, ledger)
        sharded["same_case_rows"] = case_rows(url) == case_rows(sharded_url)
        sharded["unsharded_cold_seconds"] = round(cold_total, 3)
        sharded["load_after"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        drop_database(cfg.server_url, sharded_url)
    log(
        f"sharded wall {sharded['wall_seconds']} s vs unsharded {cold_total:.1f} s; "
        f"same case rows: {sharded['same_case_rows']}"
    )
    return sharded
