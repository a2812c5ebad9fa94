"""Prepare a Prefect server for the pipeline. Idempotent: run it after every upgrade.

Creates the process work pool, the global concurrency limits the tasks acquire with
strict=True (a missing limit would otherwise be skipped silently), Prefect Variables with
the installation's defaults, and the automations operators rely on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from dunning.deployments.definitions import PIPELINE_TAG, WORK_POOL
from dunning.flows.degraded import STATE_NAME as DEGRADED_STATE

# Names the tasks use with prefect.concurrency.sync.concurrency(..., strict=True).
CONCURRENCY_LIMITS = {"dunning-partner-api": 4, "dunning-mail": 2}
AUTOMATION_STALE = "dunning: pipeline not completed for 3 hours"
AUTOMATION_FAILED = "dunning: pipeline run failed"
AUTOMATION_DEGRADED = "dunning: pipeline run degraded"


@dataclass
class BootstrapReport:
    created: list[str]
    updated: list[str]


def bootstrap(notification_block_id: str | None = None) -> BootstrapReport:
    from prefect import get_client
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
        WorkPoolCreate,
    )
    from prefect.exceptions import ObjectNotFound
    from prefect.variables import Variable

    from dunning.config import get_settings

    report = BootstrapReport(created=[], updated=[])
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(WORK_POOL)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=WORK_POOL, type="process"))
            report.created.append(f"work pool {WORK_POOL}")
        for name, limit in CONCURRENCY_LIMITS.items():
            try:
                current = client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=limit)
                )
                report.created.append(f"concurrency limit {name}={limit}")
            else:
                if current.limit != limit:
                    client.update_global_concurrency_limit(
                        name, GlobalConcurrencyLimitUpdate(limit=limit)
                    )
                    report.updated.append(f"concurrency limit {name}={limit}")

    settings = get_settings()
    for name, value in {
        "dunning_timezone": settings.timezone,
        "dunning_default_option": settings.default_option,
        "dunning_batch_size": settings.batch_size,
    }.items():
        if Variable.get(name) != value:
            Variable.set(name, value, overwrite=True)
            report.updated.append(f"variable {name}")

    for automation in _automations(notification_block_id):
        outcome = _upsert_automation(automation)
        if outcome:
            getattr(report, outcome).append(f"automation {automation.name!r}")
    return report


def _automations(notification_block_id: str | None) -> list:
    """Flow-run-state triggers on the `pipeline` tag, so the Prefect UI names them ("when any
    flow run with tag pipeline enters Failed") and they cover every pipeline deployment:
    dunning-run, its shards and the sharded fan-out."""
    from uuid import UUID

    from prefect.automations import Automation
    from prefect.events.actions import DoNothing, SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    if notification_block_id:
        does = "Sends a notification."
    else:
        does = (
            "Records prefect.automation.triggered in the event feed, nothing more: run "
            "`dunning bootstrap --notification-block-id ID` to send a notification instead."
        )

    def action(subject: str):
        if notification_block_id:
            return SendNotification(
                block_document_id=UUID(notification_block_id),
                subject=subject,
                body="{{ flow_run.name }} ({{ flow_run.state.name }}): "
                "{{ flow_run.state.message }}",
            )
        return DoNothing()

    def pipeline_runs(expect: set[str], **kwargs) -> EventTrigger:
        return EventTrigger(
            # lists, as the server returns them: bootstrap compares to find what changed
            match={"prefect.resource.id": ["prefect.flow-run.*"]},
            match_related={
                "prefect.resource.role": ["tag"],
                "prefect.resource.id": [f"prefect.tag.{PIPELINE_TAG}"],
            },
            expect=expect,
            threshold=1,
            **kwargs,
        )

    return [
        Automation(
            name=AUTOMATION_STALE,
            description="Watches the runs of the pipeline deployments (tag pipeline): fires "
            f"when none completed for 3 hours. {does}",
            trigger=pipeline_runs(
                {"prefect.flow-run.Completed"}, posture=Posture.Proactive, within=timedelta(hours=3)
            ),
            actions=[action("dunning pipeline has not completed for 3 hours")],
        ),
        Automation(
            name=AUTOMATION_FAILED,
            description="Watches the runs of the pipeline deployments (tag pipeline): fires "
            f"when one fails or crashes. {does}",
            trigger=pipeline_runs(
                {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
                posture=Posture.Reactive,
                within=timedelta(0),
                for_each={"prefect.resource.id"},
            ),
            actions=[action("dunning pipeline run failed")],
        ),
        Automation(
            name=AUTOMATION_DEGRADED,
            description="Watches the runs of the pipeline deployments (tag pipeline): fires "
            "when one ends Degraded: it completed, but steps had to wait (partner, mail or "
            "source unreachable, base rates past their known end, cancellations waiting for a "
            f"human; the reasons are in the run's message and in dunning.run.degraded). {does}",
            trigger=pipeline_runs(
                {f"prefect.flow-run.{DEGRADED_STATE}"},
                posture=Posture.Reactive,
                within=timedelta(0),
                for_each={"prefect.resource.id"},
            ),
            actions=[action("dunning pipeline run degraded")],
        ),
    ]


_COMPARED = ("description", "trigger", "actions")


def _canonical(value):
    """A dump with its lists of strings sorted: a trigger's `expect` and `for_each` are sets,
    dumped in the order the set iterates, which for a set read back from the server can
    differ from the one built here (an automation reported changed when it was not)."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_canonical(v) for v in value]
        return sorted(items) if all(isinstance(v, str) for v in items) else items
    return value


def _upsert_automation(automation) -> str | None:
    """Create the automation, or bring one of that name up to date (bootstrap runs after
    every upgrade); "created", "updated" or None when it was current."""
    from prefect.automations import Automation

    try:
        existing = Automation.read(name=automation.name)
    except ValueError:
        existing = None
    if existing is None:
        automation.create()
        return "created"
    wanted = _canonical(automation.model_dump(mode="json", include=set(_COMPARED)))
    if _canonical(existing.model_dump(mode="json", include=set(_COMPARED))) == wanted:
        return None
    for field in _COMPARED:
        setattr(existing, field, getattr(automation, field))
    existing.update()
    return "updated"
