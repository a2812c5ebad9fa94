"""Every entrypoint named in prefect.yaml imports, and is fit to be deployed.

Each flow has a run-name template and tags; flows that call the outside world retry there
(on the flow, or on the tasks of their module marked `calls_outside`).
"""

from __future__ import annotations

import importlib
import inspect

import pytest
from prefect import Flow
from prefect.tasks import Task

from dunning.deployments.definitions import deployment_specs
from dunning.tasks.prefect_task import LazyTask

SPECS = deployment_specs()
# Deployments whose runs talk to the source, the partner or the mail server.
CALLS_OUTSIDE = {"dunning-run", "sync-orders", "escalate-cases"}


def test_prefect_yaml_names_the_expected_deployments():
    names = {s.name for s in SPECS}
    assert {"dunning-run", "sync-orders", "refresh-reporting", "case-action"} <= names
    assert {"merchant-settings", "export-cases-csv"} <= names
    pipeline = next(s for s in SPECS if s.name == "dunning-run")
    assert pipeline.concurrency_limit == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    assert pipeline.schedules[0]["timezone"] == "Europe/Berlin"


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_entrypoint_is_a_flow_with_run_name_and_tags(spec):
    flow = spec.load_flow()
    assert isinstance(flow, Flow)
    assert flow.flow_run_name, f"{spec.entrypoint} has no flow_run_name template"
    assert "dunning" in spec.tags
    assert flow.description or flow.fn.__doc__, f"{spec.entrypoint} has no description"


@pytest.mark.parametrize(
    "spec", [s for s in SPECS if s.name in CALLS_OUTSIDE], ids=lambda s: s.name
)
def test_flows_that_call_outside_have_retries(spec):
    flow = spec.load_flow()
    module = importlib.import_module(flow.fn.__module__)
    outside_tasks = _outside_tasks(module)
    assert flow.retries or outside_tasks, f"{spec.entrypoint}: no retries where it calls outside"
    for task in outside_tasks:
        assert task.retries >= 1, f"task {task.name} calls outside without retries"


def _outside_tasks(module) -> list[Task]:
    """Tasks marked `calls_outside`, in the flow's module and the dunning modules it imports."""
    found: dict[str, Task] = {}
    modules = [module] + [
        m
        for _, m in inspect.getmembers(module, inspect.ismodule)
        if m.__name__.startswith("dunning.")
    ]
    # A parent flow calls outside through its steps (each a flow of its own): their modules too.
    modules += [
        importlib.import_module(obj.fn.__module__)
        for _, obj in inspect.getmembers(module)
        if isinstance(obj, Flow) and obj.fn.__module__ != module.__name__
    ]
    for mod in modules:
        for _, obj in inspect.getmembers(mod):
            if isinstance(obj, LazyTask) and obj.calls_outside:
                found[obj.task.name] = obj.task
    return list(found.values())


# Issue 19: whoever may start a run must not choose what the worker reads or writes (a
# source parameter read /proc/self/environ and sent the token to any host).
FORBIDDEN = {"source", "source_url", "database_url"}


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_deployment_parameters_name_no_source_and_no_database(spec):
    from prefect.utilities.callables import parameter_schema, parameter_schema_from_entrypoint

    # what `prefect deploy` sends (parsed from the source) and what `serve` builds
    parsed = parameter_schema_from_entrypoint(spec.entrypoint)
    loaded = parameter_schema(spec.load_flow())
    for schema in (parsed, loaded):
        assert not FORBIDDEN & set(schema.properties), (spec.name, sorted(schema.properties))
    assert not FORBIDDEN & set(spec.parameters), spec.parameters


def prefect_task(obj):
    """The Prefect task behind a task module's lazy `@task`, or `obj` itself."""
    return obj.task if isinstance(obj, LazyTask) else obj


# Tasks that must not retry, and why.
NO_RETRIES = {"case-action": "an operator's refused action is final, not a transient error"}


def test_every_task_retries_unless_a_retry_would_be_wrong():
    """Every Prefect task is in dunning/tasks (flows only order them), and every one of them
    does I/O (database, source, partner, mail): each retries, but for the listed few."""
    import pkgutil

    import dunning.flows
    import dunning.tasks

    def tasks_in(package) -> dict[str, Task]:
        found = {}
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            for _, obj in inspect.getmembers(module):
                obj = prefect_task(obj)
                if isinstance(obj, Task) and obj.fn.__module__ == info.name:
                    found[obj.name] = obj
        return found

    assert tasks_in(dunning.flows) == {}, "a @task in a flow module: move it to dunning/tasks"
    tasks = tasks_in(dunning.tasks)
    assert len(tasks) >= 8, sorted(tasks)
    without = {name for name, t in tasks.items() if not t.retries}
    assert without == set(NO_RETRIES), without


def test_no_task_carries_a_tag():
    """Prefect acquires a concurrency lease for each tag of a task run: after a few idle
    seconds the first acquisition cost 1.7 s of an hourly run's 2 s sync (Prefect 3.9)."""
    import pkgutil

    import dunning.tasks

    tagged = []
    for info in pkgutil.iter_modules(dunning.tasks.__path__, "dunning.tasks."):
        for name, obj in inspect.getmembers(importlib.import_module(info.name)):
            if isinstance(obj, LazyTask) and obj.task.tags:
                tagged.append(f"{info.name}.{name}: {sorted(obj.task.tags)}")
    assert not tagged, tagged
