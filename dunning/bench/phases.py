"""Phases: what the benchmark times, each step of the pipeline as a phase of its own.

The pipeline is not assembled here: a pipeline phase set is one run of `dunning_run` (through
`dunning.flows.fanout.run_local_shard`, as the local fan-out runs each shard), with a clock
on each of its steps (`watching_steps`). A step's time is that of its work inside the run,
its task runs' Prefect cost included; its rows and details are what the step returned. The
task runs of each phase (those the run started while the step ran) are read from Prefect
afterwards (`task_runs.TaskRunLedger`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dunning.bench.environment import BENCH_ENV, at_once, peak_rss_mib, reset_peak_rss
from dunning.bench.task_runs import TaskRunLedger


@dataclass
class Phase:
    run: str  # baseline / cold / incremental / next day / escalation / sharded
    name: str
    seconds: float
    rows: int
    peak_rss_mib: float
    task_runs: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rows_per_s"] = round(self.rows_per_s, 1)
        d["seconds"] = round(self.seconds, 3)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Phase:
        return cls(**{f.name: d[f.name] for f in fields(cls)})


def timed(run: str, name: str, fn: Callable[[], Any], rows: Callable[[Any], int]) -> tuple:
    reset_peak_rss()
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    return Phase(run, name, seconds, rows(result), peak_rss_mib()), result


# Each step of the pipeline as a phase: the phase's name and the rows it handled, read from
# what the step returned.
STEP_PHASES: dict[str, tuple[str, Callable[[dict[str, Any]], int]]] = {
    "sync": ("load", lambda r: r["inserted"] + r["updated"]),
    "detect": ("detect", lambda r: r["candidates"]),
    "handover": ("handover", lambda r: sum(v for v in r.values() if isinstance(v, int))),
    "escalate": ("escalate", lambda r: r.get("claimed", 0)),
    "report": ("report", lambda r: r["cases"]),
}


class StepClock:
    """Watches the steps of a `dunning_run` (see `watching_steps`): each step's seconds, peak
    RSS and span of wall-clock time, and the flow run they belong to."""

    def __init__(self) -> None:
        self.steps: dict[str, tuple[float, float]] = {}
        self.spans: dict[str, tuple[datetime, datetime]] = {}
        self.flow_run_id: str | None = None

    @contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        from prefect.runtime import flow_run

        self.flow_run_id = flow_run.id
        reset_peak_rss()
        begun = datetime.now(UTC)
        started = time.perf_counter()
        yield
        self.steps[step] = (time.perf_counter() - started, peak_rss_mib())
        self.spans[step] = (begun, datetime.now(UTC))


@dataclass
class PipelineRun:
    phases: list[Phase]
    flow_run_id: str
    seconds: float  # the whole flow run: the steps, the artifacts and events at its end


def pipeline_phases(
    run: str,
    url: str,
    source: Path,
    as_of: datetime,
    *,
    shard: int | None = None,
    shards: int = 1,
) -> PipelineRun:
    """One `dunning_run` without escalation on `url` and `source`, each step a phase."""
    from dunning.flows.fanout import run_local_shard
    from dunning.flows.pipeline import watching_steps

    clock = StepClock()
    started = time.perf_counter()
    with watching_steps(clock):
        summary = run_local_shard(url, str(source), as_of, shard, shards)
    seconds = time.perf_counter() - started
    phases = []
    for step, (step_seconds, peak) in clock.steps.items():
        name, rows = STEP_PHASES[step]
        result = summary[step]
        phases.append(Phase(run, name, step_seconds, rows(result), peak, details=dict(result)))
        begun, ended = clock.spans[step]
        phases[-1].details["span"] = [begun.isoformat(), ended.isoformat()]
    assert clock.flow_run_id, "the pipeline ran no step"
    return PipelineRun(phases, clock.flow_run_id, seconds)


def count_pipeline(ledger: TaskRunLedger, key: str, done: PipelineRun) -> None:
    """Read the task runs of `done` (each phase's span of it, and the whole run as `key`)."""
    for phase in done.phases:
        begun, ended = (datetime.fromisoformat(t) for t in phase.details["span"])
        ledger.phase(phase, done.flow_run_id, (begun, ended))
    ledger.run(key, done.flow_run_id)


# --- sharded cold run: one OS process per shard -------------------------------------------------


def _shard_worker(
    api: str, url: str, source: str, as_of: datetime, shard: int, shards: int, q, go
) -> None:
    os.environ.update(BENCH_ENV)
    try:
        from dunning.flows.fanout import run_local_shard  # noqa: F401  (imported before the clock)
        from dunning.flows.prefect_api import using_prefect_api

        q.put(("ready", shard))
        go.wait()
        with using_prefect_api(api):
            done = pipeline_phases("sharded", url, Path(source), as_of, shard=shard, shards=shards)
        phases = [p.as_dict() for p in done.phases]
        q.put((shard, done.seconds, phases, done.flow_run_id, None))
    except BaseException as exc:  # handed to the parent
        q.put((shard, 0.0, [], None, repr(exc)))


def run_sharded(
    api: str, url: str, source: Path, as_of: datetime, shards: int, ledger: TaskRunLedger
) -> dict[str, Any]:
    """The cold pipeline as `shards` processes at once (as n process workers would run it),
    each reporting to the Prefect API `api`; the clock starts when every process has
    imported its modules. Per shard: its flow run's seconds and its phases (as Phase, their
    task runs filled in by `ledger`)."""
    from dunning.db import upgrade

    upgrade(url)
    wall, results = at_once(
        _shard_worker, [(api, url, str(source), as_of, i, shards) for i in range(shards)]
    )
    per_shard = {}
    for shard, seconds, phase_dicts, flow_run_id, _ in results:
        phases = [Phase.from_dict(d) for d in phase_dicts]
        count_pipeline(ledger, f"sharded {shard}", PipelineRun(phases, flow_run_id, seconds))
        per_shard[shard] = {"seconds": round(seconds, 3), "phases": phases}
    return {"shards": shards, "wall_seconds": round(wall, 3), "per_shard": per_shard}
