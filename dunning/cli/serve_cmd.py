"""`dunning serve` and `dunning bootstrap`: running the deployments beyond one call."""

from __future__ import annotations

import typer

from dunning.cli.common import console


def serve(
    no_schedules: bool = typer.Option(
        False, "--no-schedules", help="Serve for manual runs only; do not schedule the pipeline."
    ),
    limit: int | None = typer.Option(None, help="At most this many flow runs at once."),
) -> None:
    """Serve every deployment of prefect.yaml from this process (one machine, no work pool).

    Needs a Prefect server: set PREFECT_API_URL, or start one with `prefect server start`.
    """
    from dunning.deployments.serve import serve as run_serve

    console.print("Serving the dunning deployments; Ctrl+C stops (schedules are paused then).")
    run_serve(with_schedules=not no_schedules, limit=limit)


def bootstrap(
    notification_block_id: str | None = typer.Option(
        None, help="Id of a Prefect notification block the automations should send to."
    ),
) -> None:
    """Prepare the Prefect server: work pool, concurrency limits, variables, automations."""
    from dunning.deployments.bootstrap import bootstrap as run_bootstrap

    report = run_bootstrap(notification_block_id)
    for line in report.created:
        console.print(f"created {line}")
    for line in report.updated:
        console.print(f"updated {line}")
    if not report.created and not report.updated:
        console.print("Prefect server already bootstrapped; nothing to do.")
