"""What operators see in Prefect: run names, the run summary, cases that need a human,
progress of long syncs, and one event per case transition.

The lead's `dunning_run` flow calls, at its start, `current_history_id(url)` and, at its
end, `publish_run_summary`, `publish_needs_human` and `emit_case_events` with that id:
everything "of this run" is the case_history rows with a larger id. The `*_markdown` /
`*_rows` functions are plain Python (no Prefect) so they can be tested and reused.

No e-mail address or street of a buyer is read here at all; names appear masked
("Erika M."), free-text partner errors with e-mail addresses masked.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from dunning.models.board import BoardFilter, mask_name, mask_text
from dunning.models.enums import STATE_LABELS, CaseState
from dunning.models.weblinks import board_url, case_url
from dunning.tasks.artifact_queries import (
    history_since,
    needs_human_cases,
    needs_human_counts,
    newest_history_id,
    run_counts,
    transitions_by_state,
)

SUMMARY_KEY = "dunning-run-summary"
NEEDS_HUMAN_KEY = "dunning-needs-human"
SYNC_PROGRESS_KEY = "dunning-sync-progress"
EVENT_NAMESPACE = uuid.UUID("6f1b7a52-3d0e-4c1a-9d7e-5b2f0c9e8a11")
DEFAULT_ZONE = "Europe/Berlin"


def _label(state: str | None) -> str:
    if state is None:
        return "(new)"
    try:
        return f"{STATE_LABELS[CaseState(state)]} ({state})"
    except ValueError:
        return state


def _md(text: Any) -> str:
    """A value safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ").replace("\r", " ")


# --- run names --------------------------------------------------------------------------


def run_name(
    prefix: str,
    as_of: datetime | None,
    *,
    merchant: str | None = None,
    shard: int | None = None,
    shards: int = 1,
    zone: str = DEFAULT_ZONE,
) -> str:
    """`dunning-run 2026-11-26T06:00 merchant=all` (as_of on the installation's zone)."""
    moment = (as_of or datetime.now(UTC)).astimezone(ZoneInfo(zone))
    name = f"{prefix} {moment:%Y-%m-%dT%H:%M} merchant={merchant or 'all'}"
    if shard is not None and shards > 1:
        name += f" shard={shard}/{shards}"
    return name


def flow_run_namer(prefix: str) -> Callable[[], str]:
    """A `flow_run_name=` callable: reads the run's parameters (as_of, merchant, shard)."""

    def _name() -> str:
        from prefect.runtime import flow_run

        params: dict[str, Any] = dict(flow_run.parameters or {})
        as_of = params.get("as_of")
        if isinstance(as_of, str):
            try:
                as_of = datetime.fromisoformat(as_of.replace("Z", "+00:00"))
            except ValueError:
                as_of = None
        if not isinstance(as_of, datetime):
            as_of = flow_run.scheduled_start_time
        if isinstance(as_of, datetime) and as_of.tzinfo is None:
            as_of = as_of.replace(tzinfo=UTC)
        filters = params.get("filters")
        merchant = params.get("merchant_id") or params.get("merchant")
        if merchant is None and filters is not None:
            merchant = getattr(filters, "merchant_id", None) or (
                filters.get("merchant_id") if isinstance(filters, dict) else None
            )
        try:
            from dunning.config import get_settings

            zone = get_settings().timezone
        except Exception:  # settings errors surface in the flow itself
            zone = DEFAULT_ZONE
        return run_name(
            prefix,
            as_of if isinstance(as_of, datetime) else None,
            merchant=merchant,
            shard=params.get("shard"),
            shards=int(params.get("shards") or 1),
            zone=zone,
        )

    return _name


# --- the run's window in case_history ----------------------------------------------------


def current_history_id(database_url: str) -> int:
    """The newest case_history id now; call at the start of a run (0 when empty)."""
    return newest_history_id(database_url)


# --- the markdown summary of a run --------------------------------------------------------


# The step figures worth a line in the summary: (step, key) -> (what, unit). Other numbers
# of the steps (paths, watermarks, dates) stay in the run's result and log line.
STEP_FIGURES: dict[tuple[str, str], tuple[str, str]] = {
    ("sync", "read"): ("records read", "records"),
    ("sync", "inserted"): ("new orders", "orders"),
    ("sync", "updated"): ("changed orders", "orders"),
    ("sync", "quarantined"): ("records set aside (quarantine)", "records"),
    ("sync", "seconds"): ("sync time", "s"),
    ("detect", "new_cases"): ("cases opened", "cases"),
    ("detect", "paid"): ("cases paid", "cases"),
    ("detect", "cancelled"): ("cases closed by a cancelled order", "cases"),
    ("detect", "routed_scheduled"): ("opened on the ladder", "cases"),
    ("detect", "routed_awaiting_approval"): ("opened for approval", "cases"),
    ("detect", "routed_blocked"): ("opened blocked", "cases"),
    ("handover", "checked"): ("cases checked (blocked, new)", "cases"),
    ("handover", "unblocked"): ("unblocked", "cases"),
    ("escalate", "claimed"): ("due steps taken", "steps"),
    ("report", "cases"): ("board rows", "cases"),
}

NEEDS_HUMAN_LABELS = {
    CaseState.AWAITING_APPROVAL.value: "awaiting approval: start or cancel",
    CaseState.BLOCKED.value: "blocked: complete the address, then start",
    CaseState.AWAITING_CANCELLATION.value: "cancel the order at the platform, then confirm",
    "refused": "claim or reminder refused: fix it or cancel the case",
}


def step_figures(summary: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(step, what, value with its unit) for the figures of `STEP_FIGURES` a run returned,
    plus the outcomes of the escalation's actions (e.g. handover waiting)."""
    rows = []
    for (step, key), (what, unit) in STEP_FIGURES.items():
        value = (summary.get(step) or {}).get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            rows.append((step, what, _amount(value, unit)))
    performed = (summary.get("escalate") or {}).get("performed") or {}
    for outcome, n in sorted(performed.items()):
        action, _, result = outcome.partition(":")
        what = {"done": "sent", "transient": "waiting (retried next run)"}.get(result, result)
        rows.append(("escalate", f"{action}: {what}", _amount(n, "steps")))
    return rows


def _amount(value: float, unit: str) -> str:
    """`3 cases`, `1 case`, `0.16 s`."""
    return f"{value:g} {unit.removesuffix('s') if value == 1 and len(unit) > 1 else unit}"


def run_summary_markdown(
    database_url: str,
    since_history_id: int,
    *,
    title: str | None = None,
    step_summary: dict[str, Any] | None = None,
    limit: int = 20,
    degraded: str | None = None,
    web_url: str | None = None,
) -> str:
    """What the run did, for the people who watch it; led by what is degraded when the run
    had to wait (`degraded`, one line). Then: transitions, what needs a human, new and
    blocked cases, partner errors, and last the step figures (`step_summary`, the steps'
    results) with their units. English text; states as the board names them."""
    counts = run_counts(database_url, since_history_id, limit)
    steps, new_cases, blocked = counts.steps, counts.new_cases, counts.blocked
    human = needs_human_counts(database_url)

    lines = [f"**Run degraded**: {_md(degraded)}", ""] if degraded else []
    lines += [f"# {title or 'Dunning run'}", ""]
    lines += [f"## Transitions in this run: {sum(n for *_, n in steps)}", ""]
    if steps:
        lines += ["| from | to | cases |", "|---|---|---:|"]
        lines += [f"| {_md(_label(a))} | {_md(_label(b))} | {n} |" for a, b, n in steps]
    else:
        lines.append("No case changed state in this run.")
    lines += ["", f"## Needs a human: {sum(human.values())}", ""]
    if human:
        lines += ["| what to do | cases |", "|---|---:|"]
        lines += [f"| {NEEDS_HUMAN_LABELS.get(k, k)} | {n} |" for k, n in human.items()]
        lines += ["", f"The cases are listed in the artifact *{NEEDS_HUMAN_KEY}*."]
        if web_url:
            lines[-1] += f" In the web area: [awaiting approval]({_approval_url(web_url)})."
    else:
        lines.append("Nothing waits for a human.")
    lines += ["", f"## New cases: {sum(n for _, n in new_cases)}", ""]
    if new_cases:
        lines += [f"- {kind}: {n}" for kind, n in new_cases]
    lines += ["", f"## Blocked in this run (blocked now in total: {counts.blocked_total})", ""]
    if blocked:
        lines += ["| reason | cases |", "|---|---:|"]
        lines += [f"| {_md(mask_text(r) or '(no reason)')} | {n} |" for r, n in blocked]
    else:
        lines.append("No case was blocked in this run.")
    lines += ["", "## Partner errors (open cases)", ""]
    if counts.partner_errors:
        lines += ["| error | cases |", "|---|---:|"]
        lines += [f"| {_md(mask_text(e)[:300])} | {n} |" for e, n in counts.partner_errors]
    else:
        lines.append("None.")
    if counts.failed_actions:
        lines += ["", "Failed actions by step (all time): "]
        lines.append(", ".join(f"{step}: {n}" for step, n in counts.failed_actions))
    figures = step_figures(step_summary or {})
    if figures:
        lines += ["", "## Step figures", "", "| step | figure | value |", "|---|---|---:|"]
        lines += [f"| {step} | {_md(what)} | {_md(value)} |" for step, what, value in figures]
    return "\n".join(lines) + "\n"


def _approval_url(web_url: str) -> str:
    return board_url(web_url, BoardFilter(status=CaseState.AWAITING_APPROVAL.value))


def publish_run_summary(
    database_url: str,
    since_history_id: int,
    *,
    title: str | None = None,
    step_summary: dict[str, Any] | None = None,
    degraded: str | None = None,
) -> uuid.UUID:
    """The markdown summary as an artifact of the current flow run."""
    from prefect.artifacts import create_markdown_artifact

    from dunning.config import get_settings

    markdown = run_summary_markdown(
        database_url,
        since_history_id,
        title=title,
        step_summary=step_summary,
        degraded=degraded,
        web_url=get_settings().web_url,
    )
    return create_markdown_artifact(
        markdown=markdown, key=SUMMARY_KEY, description="Dunning run: what happened"
    )


# --- cases that need a human ----------------------------------------------------------------


def needs_human_rows(
    database_url: str, *, limit: int = 200, zone: str = DEFAULT_ZONE, web_url: str | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Awaiting approval, blocked, an order to cancel at the platform by hand, or refused by
    the partner (422): masked, oldest first; with `web_url` (DUNNING_WEB_URL) each row links
    to its case page in `dunning web`, where it can be started or cancelled."""
    result, total = needs_human_cases(database_url, limit)
    rows = []
    for r in result:
        if r.partner_error and r.state not in (CaseState.BLOCKED, CaseState.AWAITING_APPROVAL):
            # a reminder that could not be built or was refused is not the partner's doing
            label = "Mail: " if r.partner_error.startswith("reminder") else "Partner: "
            why = label + mask_text(r.partner_error)[:200]
        elif r.state == CaseState.BLOCKED:
            reason = (r.blocked_reason or "see the case").replace("missing address fields: ", "no ")
            why = f"blocked: {reason}"
        elif r.state == CaseState.AWAITING_CANCELLATION:
            why = "cancel the order at the platform, then confirm"
        else:
            why = "approve: start or cancel"
            if r.partner_error:
                why += "; Partner: " + mask_text(r.partner_error)[:200]
        # Narrow enough for the Prefect UI's table at 1,280 px (why last, 40 characters at
        # most; it says the state too); the full text is on the case page.
        rows.append(
            {
                "case_id": r.case_id,
                "order_id": r.order_id,
                "buyer": mask_name(r.first_name, r.last_name),
                "outstanding": f"{r.outstanding_amount:.2f} {r.currency}",
                "why": why if len(why) <= 40 else why[:39] + "…",
            }
        )
        if web_url:
            rows[-1]["link"] = case_url(web_url, r.case_id, r.merchant_id)
    return rows, total


def needs_human_description(shown: str, web_url: str | None) -> str:
    text = (
        f"Cases that need a human: {shown} (awaiting approval: start or cancel; "
        "blocked: complete the address; partner refused: fix the claim)."
    )
    if web_url:
        awaiting = board_url(web_url, BoardFilter(status=CaseState.AWAITING_APPROVAL.value))
        blocked = board_url(web_url, BoardFilter(status=CaseState.BLOCKED.value))
        text += f" In the web area: awaiting approval {awaiting} · blocked {blocked}"
    return text


def publish_needs_human(
    database_url: str, *, limit: int = 200, zone: str = DEFAULT_ZONE, web_url: str | None = None
) -> uuid.UUID:
    """The table artifact; `web_url` defaults to DUNNING_WEB_URL."""
    from prefect.artifacts import create_table_artifact

    from dunning.config import get_settings

    web_url = web_url or get_settings().web_url
    rows, total = needs_human_rows(database_url, limit=limit, zone=zone, web_url=web_url)
    shown = f"{len(rows)} of {total}" if total > len(rows) else str(total)
    return create_table_artifact(
        table=rows, key=NEEDS_HUMAN_KEY, description=needs_human_description(shown, web_url)
    )


# --- events ---------------------------------------------------------------------------------


def emit_case_events(database_url: str, since_history_id: int, *, limit: int | None = None) -> int:
    """One Prefect event `dunning.case.<to_state>` per case_history row after the id.

    With more than `limit` rows, one `dunning.run.transitions` event with the counts per
    state is sent instead (the history table keeps every transition).

    Inside a flow run the event id derives from (flow run, history id), so a retried flow
    run re-emits the same ids and the server drops the duplicates; the flow run is a
    related resource. Returns how many events were emitted.
    """
    from prefect.events import emit_event
    from prefect.runtime import flow_run

    run_id = flow_run.id
    related_run = (
        [{"prefect.resource.id": f"prefect.flow-run.{run_id}", "prefect.resource.role": "flow-run"}]
        if run_id
        else []
    )

    emitted = 0
    if limit is not None:
        by_state = transitions_by_state(database_url, since_history_id)
        if sum(by_state.values()) > limit:
            # Too many to send one by one: one event stands for the run's transitions.
            emit_event(
                event="dunning.run.transitions",
                resource={"prefect.resource.id": f"dunning.run.{run_id or 'local'}"},
                related=related_run,
                payload={"to_state_counts": by_state, "since_history_id": since_history_id},
                id=uuid.uuid5(EVENT_NAMESPACE, f"{run_id}:summary") if run_id else None,
            )
            return 1
    for row in history_since(database_url, since_history_id):
        emit_event(
            event=f"dunning.case.{row.to_state}",
            resource={
                "prefect.resource.id": f"dunning.case.{row.case_id}",
                "prefect.resource.name": f"case {row.case_id}",
                "dunning.merchant_id": row.merchant_id,
            },
            related=[
                {
                    "prefect.resource.id": f"dunning.merchant.{row.merchant_id}",
                    "prefect.resource.role": "merchant",
                },
                *related_run,
            ],
            # occurred = now: automations react to recent events; `at` is the as_of.
            payload={
                "at": row.at.isoformat(),
                "history_id": row.id,
                "from_state": row.from_state,
                "to_state": row.to_state,
                "actor": row.actor,
            },
            id=uuid.uuid5(EVENT_NAMESPACE, f"{run_id}:{row.id}") if run_id else None,
        )
        emitted += 1
    return emitted


# --- progress of long syncs -----------------------------------------------------------------


class SyncProgress:
    """A progress artifact for a long sync: `with SyncProgress(total) as p: p.update(done)`."""

    def __init__(self, total: int | None, description: str = "Sync progress") -> None:
        self.total = total
        self.description = description
        self.artifact_id: uuid.UUID | None = None
        self._last = -1.0

    def __enter__(self) -> SyncProgress:
        from prefect.artifacts import create_progress_artifact

        self.artifact_id = create_progress_artifact(
            progress=0.0, key=SYNC_PROGRESS_KEY, description=self.description
        )
        return self

    def update(self, done: int, total: int | None = None) -> None:
        from prefect.artifacts import update_progress_artifact

        total = total or self.total
        if not total or self.artifact_id is None:
            return
        percent = min(100.0, round(100.0 * done / total, 1))
        if percent - self._last >= 1.0 or percent == 100.0:  # at most ~100 API calls
            update_progress_artifact(artifact_id=self.artifact_id, progress=percent)
            self._last = percent

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None and self.total:
            self.update(self.total)
