"""The parent flow `dunning run`: sync -> detect -> handover -> escalate -> refresh.

The pipeline is composed here once, as `STEPS`: an ordered list of named steps. `dunning_run`
walks it and runs each step's work in its own flow run, so the Prefect UI shows the steps'
task runs as children of one run; each step is also a flow of its own, deployed alone. The
local shard fan-out, the demo and the benchmark run `dunning_run` too (the benchmark times
each step through `watching_steps`, never by assembling the steps itself). `as_of` is
resolved once here and passed down, so every step sees the same moment. At the end the run
leaves what operators look at: a summary, the cases that need a human, and one event per
case transition for automations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, NamedTuple

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, State

from dunning.config import get_settings
from dunning.db import ensure_schema
from dunning.flows import artifacts, degraded
from dunning.flows.cases import apply_handover_rules, detect_cases
from dunning.flows.escalate import escalate_cases
from dunning.flows.report import refresh_reporting
from dunning.flows.sync import sync_orders
from dunning.models.sharding import check_shard
from dunning.tasks.source import source_unreachable

# Above this many transitions in one run, events would flood the server: one summary
# event `dunning.run.transitions` stands for them, and the history table has each one.
MAX_CASE_EVENTS = 2000


class Step(NamedTuple):
    """One step of the pipeline: its name in the run's summary and its flow, deployed alone
    as well (called with `as_of`, `shard`, `shards`, and `full` when `takes_full`).

    `dunning_run` calls the flow's function (`flow.fn`) inside its own flow run, not the flow
    as a subflow: a subflow run cost 0.15 s and its settings switch 0.07 s on top of the
    work, per step (two thirds of an hourly run's Prefect cost at a million orders); the
    steps' task runs are the run's children."""

    name: str
    flow: Any
    takes_full: bool = False


STEPS: tuple[Step, ...] = (
    Step("sync", sync_orders, takes_full=True),
    Step("detect", detect_cases, takes_full=True),
    Step("handover", apply_handover_rules),
    Step("escalate", escalate_cases),
    Step("report", refresh_reporting),
)


def step_named(name: str) -> Step:
    """The step of `STEPS` called `name` (the benchmark's escalation rounds run one alone)."""
    for step in STEPS:
        if step.name == name:
            return step
    raise KeyError(f"no pipeline step {name!r}; the steps: {[s.name for s in STEPS]}")


# Who watches the steps of runs in this context: called with a step's name, it gives the
# context the step runs in (the benchmark's clock). Not a flow parameter: it is no input.
StepWatch = Callable[[str], AbstractContextManager[Any]]
_watch: ContextVar[StepWatch | None] = ContextVar("dunning_step_watch", default=None)


@contextmanager
def watching_steps(watch: StepWatch) -> Iterator[None]:
    """Run every step of the `dunning_run`s inside this block in `watch(step.name)`."""
    token = _watch.set(watch)
    try:
        yield
    finally:
        _watch.reset(token)


@flow(
    name="dunning-run",
    flow_run_name=artifacts.flow_run_namer("dunning-run"),
    description="Sync orders, detect cases, route them, escalate due cases, refresh the board.",
    log_prints=False,
)
def dunning_run(
    as_of: datetime | None = None,
    full: bool = False,
    shard: int | None = None,
    shards: int = 1,
    escalate: bool = True,
) -> dict[str, Any] | State:
    """One run of the whole pipeline as of `as_of` (default: now): the steps of `STEPS` in
    order (without escalation when `escalate` is false).

    A run whose steps had to wait ends Completed named "Degraded" (see `dunning.flows.
    degraded`) with the summary as its result: a direct call still returns the summary.

    Args:
        as_of: The moment the run counts as (ISO date-time with offset); empty means now.
        full: Reload every order from the source instead of the changes since the last sync.
        shard: Which shard of merchants this run handles (0 to shards-1); empty: all.
        shards: Into how many shards the merchants are split (1: no sharding).
        escalate: Send the due reminders, handovers and court or cancellation steps.
    """
    check_shard(shard, shards)
    as_of = (as_of or datetime.now(UTC)).astimezone(UTC)
    # Issues 9 and 19: the database and the source come from the settings, never from run
    # parameters: those are stored and shown by the Prefect server, and whoever may start
    # a run must not point the worker (and its secrets) elsewhere.
    url = get_settings().database_url
    ensure_schema(url)
    since = artifacts.current_history_id(url)
    common: dict[str, Any] = {"as_of": as_of, "shard": shard, "shards": shards}
    summary: dict[str, Any] = {"as_of": as_of.isoformat()}
    watch = _watch.get() or (lambda name: nullcontext())

    source_down = False
    for step in STEPS:
        if step.name == "escalate" and not escalate:
            continue
        if source_down and step.name != "report":
            # Detecting or sending on data the source could not refresh would remind
            # buyers who may have paid: wait for the source, keep the board current.
            summary[step.name] = {"skipped": "source unreachable"}
            continue
        with watch(step.name):
            try:
                summary[step.name] = step.flow.fn(
                    **common, **({"full": full} if step.takes_full else {})
                )
            except Exception as exc:
                if step.name != "sync" or not source_unreachable(exc):
                    raise
                source_down = True
                summary["sync"] = {"error": str(exc)[:300]}

    reasons = degraded.check_degraded(url, summary, as_of)
    message = degraded.degraded_message(reasons) if reasons else None
    title = artifacts.run_name(
        "Dunning run", as_of, shard=shard, shards=shards, zone=get_settings().timezone
    )
    artifacts.publish_run_summary(
        url,
        since,
        title=title,
        step_summary=summary,
        degraded=degraded.reasons_text(reasons) if reasons else None,
    )
    artifacts.publish_needs_human(url)
    summary["events"] = artifacts.emit_case_events(url, since, limit=MAX_CASE_EVENTS)
    logger = get_run_logger()
    logger.info("dunning run as of %s: %s", as_of.isoformat(), _counts(summary))
    if not reasons:
        return summary
    summary["degraded"] = {r.key: r.text for r in reasons}
    logger.warning("dunning run as of %s %s", as_of.isoformat(), message)
    degraded.emit_degraded(reasons, as_of, flow_run.get_id())
    return Completed(name=degraded.STATE_NAME, message=message, data=summary)


def _counts(summary: dict[str, Any]) -> dict[str, Any]:
    """The numbers of each step, flat, for the log line and the summary artifact."""
    flat: dict[str, Any] = {}
    for step, value in summary.items():
        if isinstance(value, dict):
            for key, number in value.items():
                if isinstance(number, int | float | str) and not isinstance(number, bool):
                    flat[f"{step}.{key}"] = number
    return flat
