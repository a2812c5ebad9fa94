"""The task runs the benchmark's flow runs made, read from Prefect (never a declared count).

A phase names the flow run it measured: a `dunning-run` flow run and the span of time its
step ran (the task runs that started within it), or a flow run of its own (an escalation
round); a whole pipeline run counts its own task runs and those of every subflow run beneath
it. The placeholder task run Prefect makes in a parent for each subflow call is not a task
run of the pipeline and is left out. Prefect records task
runs from the events the runs send, a moment after they finish: the counts are read at the
end and again until they stop changing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

PAGE = 200
Span = tuple[datetime, datetime]  # a step's begin and end


@dataclass
class TaskRunLedger:
    """What to count: phases (by their flow run) and whole runs (by key), filled in `fill`."""

    phases: list[tuple[Any, UUID, Span | None]] = field(default_factory=list)
    runs: dict[str, UUID] = field(default_factory=dict)
    counted: dict[str, int] = field(default_factory=dict)

    def phase(self, phase: Any, flow_run_id: UUID | str, span: Span | None = None) -> None:
        """`phase.task_runs` will be those of `flow_run_id`, or those of it that started
        within `span` (a step's); called again, they add up."""
        self.phases.append((phase, UUID(str(flow_run_id)), span))

    def run(self, key: str, flow_run_id: UUID | str) -> None:
        """`counted[key]` will be the task runs of the flow run and all its subflow runs."""
        self.runs[key] = UUID(str(flow_run_id))

    def fill(self, settle_seconds: float = 60.0) -> None:
        if not self.phases and not self.runs:
            return
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            deadline = time.monotonic() + settle_seconds
            last = None
            while True:
                counts = self._count(client)
                if counts == last or time.monotonic() > deadline:
                    break
                last = counts
                time.sleep(1.0)
        for phase in {id(p): p for p, _, _ in self.phases}.values():
            phase.task_runs = 0
        for phase, root, span in self.phases:
            phase.task_runs += counts[(root, span)]
        self.counted = {key: counts[(root, "*")] for key, root in self.runs.items()}

    def _count(self, client: Any) -> dict[tuple[UUID, Any], int]:
        counts: dict[tuple[UUID, Any], int] = {}
        for _, root, span in self.phases:
            counts[(root, span)] = task_runs_of(client, root, span)
        for root in self.runs.values():
            tree, total = [root], 0
            while tree:
                run_id = tree.pop()
                total += task_runs_of(client, run_id)
                tree += [run.id for run in subflow_runs(client, run_id)]
            counts[(root, "*")] = total
        return counts


@dataclass
class _Subflow:
    id: UUID
    flow_name: str


def subflow_runs(client: Any, parent: UUID) -> list[_Subflow]:
    """The flow runs started from `parent`'s body, with their flows' names."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    runs = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent])
        )
    )
    names = {flow_id: client.read_flow(flow_id).name for flow_id in {r.flow_id for r in runs}}
    return [_Subflow(r.id, names[r.flow_id]) for r in runs]


def task_runs_of(client: Any, flow_run_id: UUID, span: Span | None = None) -> int:
    """The task runs of one flow run (not of its subflow runs, not their placeholders);
    with `span`, those that started within it."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterStartTime,
        TaskRunFilterSubFlowRuns,
    )

    total, offset = 0, 0
    while True:
        page = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(
                subflow_runs=TaskRunFilterSubFlowRuns(exists_=False),
                start_time=TaskRunFilterStartTime(after_=span[0], before_=span[1])
                if span
                else None,
            ),
            limit=PAGE,
            offset=offset,
        )
        total += len(page)
        if len(page) < PAGE:
            return total
        offset += PAGE
