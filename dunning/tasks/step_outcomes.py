"""Recording what the performed actions did, in one transaction per batch: actions done,
failed or back to waiting; cases moved (through `move_cases`), their charges recorded."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, func, update
from sqlalchemy.orm import Session

from dunning.db import insert_for, session_scope
from dunning.models.claims import refresh_outstanding
from dunning.models.enums import ActionStatus, ActionStep, CaseState
from dunning.models.ladder import FROM_STATES, MAIL_STEPS, TO_STATE
from dunning.models.ledger import CANCELLATION_COSTS
from dunning.models.schema import Action, Case, CaseCharge
from dunning.tasks.step_gate import Result
from dunning.tasks.transitions import move_cases

ACTOR = "escalation"
ACTIONS = Action.__table__
CASES = Case.__table__


def _dec(value: Any) -> Decimal:
    return Decimal(str(value))


_MAIL_STEPS = {step.value for step in MAIL_STEPS}


def record_outcomes(url: str, results: Sequence[Result], as_of: datetime) -> None:
    """One transaction: actions done/failed/back to waiting; cases moved and updated."""
    if not results:
        return
    with session_scope(url) as s:
        done = [r for r in results if r.status == "done"]
        failed = [r for r in results if r.status == "failed"]
        transient = [r for r in results if r.status == "transient"]
        done_ids: set[int] = set()
        if done:
            for start in range(0, len(done), 1000):
                chunk = done[start : start + 1000]
                got = s.execute(
                    update(ACTIONS)
                    .where(
                        ACTIONS.c.id.in_([r.action_id for r in chunk]),
                        ACTIONS.c.status == ActionStatus.PENDING.value,
                    )
                    .values(
                        status=ActionStatus.DONE.value,
                        done_at=as_of,
                        sent_at=as_of,
                        attempts=ACTIONS.c.attempts + 1,
                        lease_until=None,
                        last_error=None,
                    )
                    .returning(ACTIONS.c.id)
                ).scalars()
                done_ids.update(got)
            # Responses per row (small JSON): executemany.
            s.execute(
                update(ACTIONS)
                .where(ACTIONS.c.id == bindparam("aid"))
                .values(response=bindparam("resp")),
                [{"aid": r.action_id, "resp": r.response} for r in done if r.action_id in done_ids],
            )
        if failed:
            s.execute(
                update(ACTIONS)
                .where(
                    ACTIONS.c.id == bindparam("aid"), ACTIONS.c.status == ActionStatus.PENDING.value
                )
                .values(
                    status=ActionStatus.FAILED.value,
                    last_error=bindparam("err"),
                    attempts=ACTIONS.c.attempts + 1,
                    lease_until=None,
                    sent_at=as_of,
                ),
                [{"aid": r.action_id, "err": r.error} for r in failed],
            )
            s.execute(
                update(CASES)
                .where(CASES.c.case_id == bindparam("cid"))
                .values(partner_error=bindparam("err"), updated_at=as_of),
                [{"cid": r.case_id, "err": f"{r.step}: {r.error}"} for r in failed],
            )
        if transient:
            s.execute(
                update(ACTIONS)
                .where(
                    ACTIONS.c.id == bindparam("aid"), ACTIONS.c.status == ActionStatus.PENDING.value
                )
                .values(
                    last_error=bindparam("err"), attempts=ACTIONS.c.attempts + 1, lease_until=None
                ),
                [{"aid": r.action_id, "err": r.error} for r in transient],
            )
            # Issue 16: the board says why the step waits, until it is sent or given up.
            s.execute(
                update(CASES)
                .where(CASES.c.case_id == bindparam("cid"))
                .values(waiting_reason=func.coalesce(CASES.c.waiting_reason, bindparam("why"))),
                [{"cid": r.case_id, "why": _waiting(r, as_of)} for r in transient],
            )
        settled = sorted({r.case_id for r in results if r.status != "transient"})
        for start in range(0, len(settled), 1000):
            s.execute(
                update(CASES)
                .where(
                    CASES.c.case_id.in_(settled[start : start + 1000]),
                    CASES.c.waiting_reason.is_not(None),
                )
                .values(waiting_reason=None)
            )
        _apply_done(s, [r for r in done if r.action_id in done_ids], as_of)
        refused = [r for r in failed if r.step == ActionStep.CANCEL_ORDER.value]
        await_cancellation(s, refused, as_of)
        touched = sorted({r.case_id for r in results})
        refresh_outstanding(s, touched)


def _waiting(r: Result, as_of: datetime) -> str:
    """`handover waits for the partner since 2026-11-29 05:00 UTC: <the error>`."""
    who = "the mail server" if r.step in _MAIL_STEPS else "the partner"
    error = (r.error or "no answer")[:200]
    return f"{r.step} waits for {who} since {as_of:%Y-%m-%d %H:%M} UTC: {error}"


def _insert_charges(s: Session, rows: list[dict[str, Any]]) -> None:
    """Charges caused by a done step; a (case, key) recorded before is not charged again."""
    if rows:
        s.execute(insert_for(s, CaseCharge.__table__).on_conflict_do_nothing(), rows)


def _charge_row(case_id: int, charge: dict[str, Any], as_of: datetime) -> dict[str, Any]:
    return {
        "case_id": case_id,
        "key": charge["key"],
        "kind": charge["kind"],
        "day": date.fromisoformat(charge["day"]),
        "amount": _dec(charge["amount"]),
        "reason": charge["reason"],
        "created_at": as_of,
    }


def await_cancellation(s: Session, results: Sequence[Result], as_of: datetime) -> None:
    """A cancellation nothing here can perform (a file source, or the orders API refused):
    the case waits, visibly, for an operator to cancel the order at the platform and
    confirm (`dunning case confirm-cancellation`)."""
    for r in results:
        why = r.error or "the source is a file, not the orders API"
        move_cases(
            s,
            [r.case_id],
            CaseState.AWAITING_CANCELLATION,
            from_states=list(FROM_STATES[ActionStep.CANCEL_ORDER]),
            actor=ACTOR,
            reason=f"cancel order {r.payload['order_id']} at the platform ({why}), then "
            f"confirm: dunning case confirm-cancellation {r.case_id}",
            as_of=as_of,
            values={"last_step_at": as_of, "next_step_at": None},
        )


def _apply_done(s: Session, done: Sequence[Result], as_of: datetime) -> None:
    by_step: dict[str, list[Result]] = defaultdict(list)
    for r in done:
        by_step[r.step].append(r)
    for step_name in (ActionStep.REMINDER_1.value, ActionStep.REMINDER_2.value):
        rs = by_step.get(step_name, [])
        if not rs:
            continue
        step = ActionStep(step_name)
        (from_state,) = FROM_STATES[step]
        s.execute(
            update(CASES)
            .where(CASES.c.case_id == bindparam("cid"), CASES.c.state == from_state.value)
            .values(
                fees_amount=bindparam("fees"),
                interest_amount=bindparam("interest"),
                next_step_at=bindparam("next_at"),
            ),
            [
                {
                    "cid": r.case_id,
                    "fees": _dec(r.payload["case"]["fees_amount"]),
                    "interest": _dec(r.payload["case"]["interest_amount"]),
                    "next_at": datetime.fromisoformat(r.payload["case"]["next_step_at"]),
                }
                for r in rs
            ],
        )
        _insert_charges(
            s,
            [
                _charge_row(r.case_id, r.payload["charge"], as_of)
                for r in rs
                if "charge" in r.payload
            ],
        )
        at_col = "reminder_1_at" if step == ActionStep.REMINDER_1 else "reminder_2_at"
        move_cases(
            s,
            [r.case_id for r in rs],
            TO_STATE[step],
            from_states=[from_state],
            actor=ACTOR,
            reason=f"{step.value} sent",
            as_of=as_of,
            values={at_col: as_of, "last_step_at": as_of},
        )
    rs = by_step.get(ActionStep.TERMINATION_NOTICE.value, [])
    for r in rs:  # each with its own deadline in the history
        move_cases(
            s,
            [r.case_id],
            CaseState.TERMINATION_NOTICE,
            from_states=[CaseState.WITH_PARTNER],
            actor=ACTOR,
            reason=f"§ 498 BGB termination notice sent: arrears {r.payload['total']} "
            f"{r.payload['currency']} due by {r.payload['deadline']}",
            as_of=as_of,
            values={
                "last_step_at": as_of,
                "next_step_at": datetime.fromisoformat(r.payload["case"]["next_step_at"]),
                "interest_amount": _dec(r.payload["case"]["interest_amount"]),
            },
        )
    rs = by_step.get(ActionStep.HANDOVER.value, [])
    if rs:
        # The board's partner reference is the partner's claim id: its file number, which
        # operators quote on the phone.
        s.execute(
            update(CASES)
            .where(CASES.c.case_id == bindparam("cid"), CASES.c.state == CaseState.REMINDER_2.value)
            .values(
                partner_claim_id=bindparam("claim_id"),
                partner_reference=bindparam("claim_id"),
                partner_status=bindparam("pstatus"),
                partner_error=None,
                interest_amount=bindparam("interest"),
                fees_amount=bindparam("fees"),
            ),
            [
                {
                    "cid": r.case_id,
                    "claim_id": r.response.get("claim_id"),
                    "pstatus": r.response.get("status", "received"),
                    "interest": _dec(r.payload["case"]["interest_amount"]),
                    "fees": _dec(r.payload["case"]["fees_amount"]),
                }
                for r in rs
            ],
        )
        # Issue 9: a case an operator closed while its claim was on the way keeps the claim
        # id, so the next run recalls the claim from the partner instead of orphaning it.
        s.execute(
            update(CASES)
            .where(
                CASES.c.case_id == bindparam("cid"),
                CASES.c.state != CaseState.REMINDER_2.value,
                CASES.c.partner_claim_id.is_(None),
            )
            .values(
                partner_claim_id=bindparam("claim_id"), partner_reference=bindparam("claim_id")
            ),
            [{"cid": r.case_id, "claim_id": r.response.get("claim_id")} for r in rs],
        )
        move_cases(
            s,
            [r.case_id for r in rs],
            CaseState.WITH_PARTNER,
            from_states=[CaseState.REMINDER_2],
            actor=ACTOR,
            reason="claim handed over to the collection partner",
            as_of=as_of,
            values={"handed_over_at": as_of, "last_step_at": as_of, "next_step_at": None},
        )
    rs = by_step.get(ActionStep.CANCEL_ORDER.value, [])
    manual = [r for r in rs if r.response.get("manual")]
    cancelled = [r for r in rs if not r.response.get("manual")]
    await_cancellation(s, manual, as_of)
    if cancelled:
        s.execute(
            update(CASES)
            .where(CASES.c.case_id == bindparam("cid"))
            .values(cancellation_costs=bindparam("costs")),
            [{"cid": r.case_id, "costs": _dec(r.payload["cancellation_costs"])} for r in cancelled],
        )
        _insert_charges(
            s,
            [
                _charge_row(
                    r.case_id,
                    {
                        "key": "cancellation",
                        "kind": CANCELLATION_COSTS,
                        "day": r.payload["day"],
                        "amount": r.payload["cancellation_costs"],
                        "reason": "Stornokosten",
                    },
                    as_of,
                )
                for r in cancelled
                if _dec(r.payload["cancellation_costs"]) > 0
            ],
        )
        for section_498 in (True, False):
            group = [r for r in cancelled if bool(r.payload.get("section_498")) == section_498]
            move_cases(
                s,
                [r.case_id for r in group],
                CaseState.ORDER_CANCELLED,
                from_states=list(FROM_STATES[ActionStep.CANCEL_ORDER]),
                actor=ACTOR,
                reason="order cancelled at the source"
                + (" after the § 498 BGB notice period" if section_498 else ""),
                as_of=as_of,
                values={"last_step_at": as_of, "next_step_at": None, "partner_error": None},
            )
    rs = by_step.get(ActionStep.COURT_REQUEST.value, [])
    if rs:
        move_cases(
            s,
            [r.case_id for r in rs],
            CaseState.COURT,
            from_states=[CaseState.WITH_PARTNER],
            actor=ACTOR,
            reason="partner unsuccessful: court dunning procedure requested",
            as_of=as_of,
            values={
                "last_step_at": as_of,
                "partner_status": "court_requested",
                "partner_error": None,
            },
        )
    # A payment notice or added items done: the action (by its key) is the record.
    rs = by_step.get(ActionStep.RECALL.value, [])
    if rs:
        s.execute(
            update(CASES)
            .where(CASES.c.case_id.in_([r.case_id for r in rs]))
            .values(partner_status="recalled", updated_at=as_of)
        )
