"""A run whose steps had to wait ends "Degraded": a Completed state of its own name.

Waiting is not failing: the steps are retried by the next run under the same keys. But an
operator must see it, so the run's state, the first line of its summary and an event
(`dunning.run.degraded`, which an automation of `dunning bootstrap` watches) say what waits
and since when: the partner or the mail server unreachable, interest computed past the
known base rates, cancellations waiting for a human, the source unreachable (then nothing
is detected or sent on stale data; the board is refreshed).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from dunning.models.ladder import MAIL_STEPS
from dunning.tasks.artifact_queries import Waiting, waiting_on_outside

EVENT = "dunning.run.degraded"
STATE_NAME = "Degraded"
_MAIL_STEPS = {st.value for st in MAIL_STEPS}


class Reason(NamedTuple):
    key: str  # partner, mail, base_rates, cancellation
    text: str  # what waits, and since when


def _since(waiting: Waiting | None, fallback: str) -> str:
    if waiting is not None and waiting.since is not None:
        return waiting.since.isoformat(timespec="minutes")
    return fallback


def degraded_reasons(
    summary: dict[str, Any], waiting: dict[str, Waiting], as_of: datetime
) -> list[Reason]:
    """Why the run in `summary` (the step results of `dunning_run`) is degraded; [] if not."""
    now = as_of.isoformat(timespec="minutes")
    reasons: list[Reason] = []
    source_error = (summary.get("sync") or {}).get("error")
    if source_error:
        since = _since(waiting.get("source"), now)
        reasons.append(
            Reason(
                "source",
                f"source unreachable, last read {since} (nothing detected or sent: the "
                f"data may be stale): {str(source_error)[:120]}",
            )
        )
    escalate = summary.get("escalate") or {}
    performed: dict[str, int] = escalate.get("performed") or {}
    transient = {k.rsplit(":", 1)[0]: n for k, n in performed.items() if k.endswith(":transient")}

    partner_error = (escalate.get("partner_sync") or {}).get("error")
    partner_waits = sum(n for step, n in transient.items() if step not in _MAIL_STEPS)
    if partner_error or partner_waits:
        what = f"{_steps(partner_waits)} wait" if partner_waits else "no updates fetched"
        error = f": {str(partner_error)[:120]}" if partner_error else ""
        since = _since(waiting.get("partner"), now)
        reasons.append(Reason("partner", f"partner unreachable since {since} ({what}){error}"))
    mail_waits = sum(n for step, n in transient.items() if step in _MAIL_STEPS)
    if mail_waits:
        since = _since(waiting.get("mail"), now)
        reasons.append(
            Reason(
                "mail", f"mail unreachable since {since} ({_steps(mail_waits, 'reminders')} wait)"
            )
        )
    stale = (escalate.get("settle") or {}).get("interest_past_known_base_rates", 0)
    if stale:
        reasons.append(
            Reason("base_rates", f"interest of {stale} claims past the known base rates")
        )
    cancellations = waiting.get("cancellation")
    if cancellations is not None and cancellations.count:
        since = _since(cancellations, now)
        reasons.append(
            Reason(
                "cancellation",
                f"{cancellations.count} cancellations wait for a human since {since}",
            )
        )
    return reasons


def check_degraded(database_url: str, summary: dict[str, Any], as_of: datetime) -> list[Reason]:
    """The reasons for this run, read with the waits recorded in the database."""
    return degraded_reasons(summary, waiting_on_outside(database_url), as_of)


def degraded_message(reasons: list[Reason]) -> str:
    """One line for the state's message (the summary's first line says "Run degraded: "
    and the reasons)."""
    return "degraded: " + reasons_text(reasons)


def reasons_text(reasons: list[Reason]) -> str:
    return "; ".join(r.text for r in reasons)


def _steps(n: int, what: str = "steps") -> str:
    return f"{n} {what if n != 1 else what.removesuffix('s')}"


def emit_degraded(reasons: list[Reason], as_of: datetime, flow_run_id: str | None) -> None:
    """The event automations fire on; the flow run is its related resource."""
    from prefect.events import emit_event

    related = []
    if flow_run_id:
        related.append(
            {
                "prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
                "prefect.resource.role": "flow-run",
            }
        )
    emit_event(
        event=EVENT,
        resource={"prefect.resource.id": "dunning.run", "prefect.resource.name": "dunning-run"},
        related=related,
        payload={
            "as_of": as_of.isoformat(),
            "reasons": {r.key: r.text for r in reasons},
            "message": degraded_message(reasons),
        },
    )
