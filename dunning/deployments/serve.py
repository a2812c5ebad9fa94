"""Serve every deployment of prefect.yaml from one process: the single-machine setup."""

from __future__ import annotations

from dunning.deployments.definitions import deployment_specs


def runner_deployments(with_schedules: bool = True) -> list:
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron

    deployments = []
    for spec in deployment_specs():
        schedules = [
            Cron(s["cron"], timezone=s.get("timezone", "UTC"))
            for s in spec.schedules
            if with_schedules and "cron" in s
        ]
        limit = None
        if spec.concurrency_limit:
            limit = ConcurrencyLimitConfig(
                limit=spec.concurrency_limit["limit"],
                collision_strategy=ConcurrencyLimitStrategy(
                    spec.concurrency_limit.get("collision_strategy", "ENQUEUE")
                ),
            )
        deployments.append(
            spec.load_flow().to_deployment(
                name=spec.name,
                description=spec.description,
                tags=spec.tags,
                schedules=schedules or None,
                concurrency_limit=limit,
                parameters=spec.parameters,
            )
        )
    return deployments


def serve(with_schedules: bool = True, limit: int | None = None) -> None:
    """Blocks until interrupted; on stop, Prefect pauses the schedules it served."""
    from prefect import serve as prefect_serve

    prefect_serve(*runner_deployments(with_schedules), limit=limit)
