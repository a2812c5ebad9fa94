"""Prepare a Prefect server for the pipeline. Idempotent: run it after every upgrade.

Creates the process work pool, the global concurrency limits the tasks acquire with
strict=True (a missing limit would otherwise be skipped silently), Prefect Variables with
the installation's defaults, and the automations operators rely on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from dunning.deployments.definitions import PIPELINE_DEPLOYMENT, WORK_POOL
from dunning.flows.degraded import EVENT as DEGRADED_EVENT

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
        if _upsert_automation(automation):
            report.created.append(f"automation {automation.name!r}")
    return report


def _automations(notification_block_id: str | None) -> list:
    from uuid import UUID

    from prefect.automations import Automation
    from prefect.events.actions import DoNothing, SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    def action(subject: str):
        if notification_block_id:
            return SendNotification(
                block_document_id=UUID(notification_block_id),
                subject=subject,
                body="{{ event.resource.get('prefect.resource.name') }}: {{ event.event }}",
            )
        return DoNothing()

    match_pipeline = {
        "prefect.resource.role": "deployment",
        "prefect.resource.name": PIPELINE_DEPLOYMENT,
    }
    return [
        Automation(
            name=AUTOMATION_STALE,
            description="No completed run of the pipeline deployment for 3 hours.",
            trigger=EventTrigger(
                match={"prefect.resource.id": "prefect.flow-run.*"},
                match_related=match_pipeline,
                expect={"prefect.flow-run.Completed"},
                posture=Posture.Proactive,
                threshold=1,
                within=timedelta(hours=3),
            ),
            actions=[action("dunning pipeline has not completed for 3 hours")],
        ),
        Automation(
            name=AUTOMATION_FAILED,
            description="A run of the pipeline deployment failed or crashed.",
            trigger=EventTrigger(
                match={"prefect.resource.id": "prefect.flow-run.*"},
                match_related=match_pipeline,
                expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
                posture=Posture.Reactive,
                threshold=1,
                within=timedelta(0),
            ),
            actions=[action("dunning pipeline run failed")],
        ),
        Automation(
            name=AUTOMATION_DEGRADED,
            description="A pipeline run completed but had to wait: partner or mail "
            "unreachable, base rates past their known end, cancellations waiting for a human "
            "(event dunning.run.degraded, its reasons in the payload).",
            trigger=EventTrigger(
                match={"prefect.resource.id": "dunning.run"},
                expect={DEGRADED_EVENT},
                posture=Posture.Reactive,
                threshold=1,
                within=timedelta(0),
            ),
            actions=[action("dunning pipeline run degraded")],
        ),
    ]


def _upsert_automation(automation) -> bool:
    """Create the automation unless one of that name exists; True if created."""
    from prefect.automations import Automation

    try:
        existing = Automation.read(name=automation.name)
    except ValueError:
        existing = None
    if existing is not None:
        return False
    automation.create()
    return True
