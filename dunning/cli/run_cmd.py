"""`dunning run`: the whole pipeline once, as one Prefect parent flow."""

from __future__ import annotations

import os
import sys
from typing import Any

import typer

from dunning.cli.common import (
    AS_OF_HELP,
    UserError,
    as_of_option,
    console,
    database_url,
    err_console,
    quiet_expected_tracebacks,
)


def run(
    as_of: str | None = typer.Option(None, "--as-of", help=AS_OF_HELP),
) -> None:
    """Sync orders from DUNNING_SOURCE_URL, detect cases, apply the handover rules,
    escalate, refresh the board. (`dunning sync --source` reads another source once.)"""
    when = as_of_option(as_of)
    url = database_url()  # validates the URL and brings the schema up to date
    # Without PREFECT_API_URL, Prefect starts a temporary server; on a busy machine it needs
    # longer than its default 20 s, and its telemetry would print a traceback.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from dunning.flows.pipeline import dunning_run

    quiet_expected_tracebacks()
    try:
        # Issues 9, 19: the flow reads the database and the source from the settings; as
        # parameters they would be stored (the password) and open to anyone starting runs.
        summary = dunning_run(as_of=when)
    except UserError:
        raise
    except Exception as exc:  # the flow run failed: one line, the run is in Prefect's history
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"dunning run failed: {reason}") from None
    console.print(f"dunning run as of {when.isoformat(timespec='seconds')}", highlight=False)
    for step, counts in summary.items():
        if step == "as_of":
            continue
        console.print(f"  {step:<9} {_fmt(counts)}", highlight=False, soft_wrap=True)
    waiting = _mail_waiting(url, summary)
    if waiting:  # the run did what it could, but reminders are due and not sent: not a 0
        err_console.print(
            f"degraded: {waiting} reminder mail(s) wait because the SMTP server was "
            "unreachable; they go out with the next run",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)


def _mail_waiting(url: str, summary: dict[str, Any]) -> int:
    """Reminders of this run left pending because the mail server failed (`mail: ...`)."""
    performed = (summary.get("escalate") or {}).get("performed") or {}
    if not any(k.startswith("reminder") and k.endswith(":transient") for k in performed):
        return 0
    from sqlalchemy import func, select

    from dunning.db import get_engine
    from dunning.models.enums import ActionStatus
    from dunning.models.schema import Action

    with get_engine(url).connect() as conn:
        return conn.scalar(
            select(func.count()).where(
                Action.status == ActionStatus.PENDING.value,
                Action.step.startswith("reminder"),
                Action.last_error.startswith("mail: "),
            )
        )


def _fmt(counts: Any) -> str:
    """Counts of a step on one line: the numbers (and the detection mode)."""
    if not isinstance(counts, dict):
        return str(counts)
    shown = [
        f"{k}={v}"
        for k, v in counts.items()
        if (isinstance(v, int) and not isinstance(v, bool)) or k == "mode"
    ]
    return "  ".join(shown)
