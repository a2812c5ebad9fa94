"""Settling before the steps: the ledger's amounts for the cases only it knows, a case paid
in full closed as `paid`, and what was still to be sent for a closed case cancelled."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from dunning.config import Settings
from dunning.db import Scope, session_scope
from dunning.models.base_rates import BaseRateUnknown, base_rates
from dunning.models.claims import refresh_outstanding
from dunning.models.clock import local_date
from dunning.models.enums import ActionStatus, ActionStep, CaseState
from dunning.models.ladder import LADDER_STEPS
from dunning.models.ledger import Statement
from dunning.models.schema import Action, Case
from dunning.tasks.claim_events import load_claims, replayed_case_ids, store_amounts
from dunning.tasks.escalation_rows import ACTOR
from dunning.tasks.prefect_task import task
from dunning.tasks.transitions import move_cases

CASES = Case.__table__
OPEN_STATES = tuple(s for s in CaseState if not s.is_terminal)
# Claims replayed per round: their rows stay in memory until the amounts are stored.
REPLAY_CHUNK = 2000


def settle_payments(
    url: str,
    as_of: datetime,
    shard: int | None = None,
    shards: int = 1,
    settings: Settings | None = None,
) -> dict:
    """The ledger's amounts for the cases only it knows; then a claim at zero makes the case
    `paid` at once, and pending actions of closed cases are cancelled (the recall/payment
    notice to the partner is a step of `claim_due`)."""
    from dunning.config import get_settings

    settings = settings or get_settings()
    with session_scope(url) as s:
        replayed = refresh_claims(s, as_of, settings, shard, shards)
        refresh_outstanding(s, None)
        q = select(Case.case_id).where(
            Case.state.in_([st.value for st in OPEN_STATES]),
            Case.principal_amount > 0,
            func.round(Case.outstanding_amount, 2) <= 0,
        )
        ids = list(s.scalars(Scope(shard, shards).apply(q, Case.merchant_id)))
        moved = move_cases(
            s,
            ids,
            CaseState.PAID,
            from_states=list(OPEN_STATES),
            actor=ACTOR,
            reason="claim paid in full",
            as_of=as_of,
            values={"closed_at": as_of, "close_reason": "paid in full", "next_step_at": None},
        )
        now = datetime.now(UTC)
        closed = select(Case.case_id).where(
            Case.state.in_(
                [CaseState.PAID.value, CaseState.CANCELLED.value, CaseState.UNCOLLECTIBLE.value]
            )
        )
        cancelled = s.execute(
            update(Action)
            .where(
                Action.status == ActionStatus.PENDING.value,
                Action.step.in_(
                    [st.value for st in LADDER_STEPS]
                    + [ActionStep.PARTNER_PAYMENT.value, ActionStep.PARTNER_ITEMS.value]
                ),
                or_(Action.lease_until.is_(None), Action.lease_until < now),
                Action.case_id.in_(closed),
            )
            .values(status=ActionStatus.CANCELLED.value, last_error="case closed before sending")
            .execution_options(synchronize_session=False)
        ).rowcount
    return {"paid": len(moved), "actions_cancelled": cancelled or 0, **replayed}


def refresh_claims(
    s: Session, as_of: datetime, settings: Settings, shard: int | None, shards: int
) -> dict[str, Any]:
    """Replay the ledger of every open case whose amounts only it knows (interest, business
    debtors, our own charges) and store them. Base rates past their known end are reported
    (the run says so); a claim reaching before the table is set aside for an operator."""
    ids = replayed_case_ids(s, lambda q: Scope(shard, shards).apply(q, Case.merchant_id))
    rates = base_rates(settings.base_rates_file)
    today = local_date(as_of, settings.zone)
    stale = 0
    refused: dict[int, str] = {}
    for start in range(0, len(ids), REPLAY_CHUNK):
        claims = load_claims(s, ids[start : start + REPLAY_CHUNK], settings, as_of)
        statements: dict[int, Statement] = {}
        for case_id, claim in claims.items():
            try:
                statements[case_id] = claim.statement(today, rates)
            except BaseRateUnknown as exc:
                refused[case_id] = f"claim: {exc}"
                continue
            stale += statements[case_id].rates_stale
        store_amounts(s, statements, as_of)
    if refused:
        s.execute(
            update(CASES)
            .where(CASES.c.case_id == bindparam("cid"))
            .values(partner_error=bindparam("err")),
            [{"cid": cid, "err": err} for cid, err in refused.items()],
        )
    out: dict[str, Any] = {"claims_replayed": len(ids)}
    if stale:  # the flow says so (log, event); the summary shows the count
        out["interest_past_known_base_rates"] = stale
        out["base_rates_known_until"] = rates.known_until.isoformat()
    if refused:
        out["claims_refused"] = len(refused)
    return out


@task(name="settle-payments", retries=2, retry_delay_seconds=[2, 10])
def settle_task(url: str, as_of: datetime, shard: int | None, shards: int) -> dict[str, int]:
    """One transaction; a retry settles what is still unsettled."""
    return settle_payments(url, as_of, shard, shards)
