"""Operator actions on one case: the plain-Python core (no Prefect, so the CLI stays fast).

`perform_action` is the plain-Python core that both `dunning case ...` and the `case_action`
flow call: it locks the case row, asks the pure rules (`dunning.models.operator`), and moves
the case with `move_cases` (guarded by the state it read, so a concurrent run or operator
cannot be overwritten), writing the history row with the operator and the reason.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dunning.config import Settings, get_settings
from dunning.models.address import REQUIRED_FIELDS, check_address
from dunning.models.enums import CaseState
from dunning.models.operator import ActionRefused, OperatorAction, decide, first_step_at
from dunning.models.schema import Buyer, Case, MerchantSettings
from dunning.tasks.prefect_task import task
from dunning.tasks.transitions import move_cases

log = logging.getLogger(__name__)


class CaseNotFound(ActionRefused):
    """No case matches the id the operator gave."""


def resolve_case(session: Session, ref: str, *, lock: bool = False) -> Case:
    """A case by its id, or by order id (the open case of the order, else its newest case)."""
    ref = str(ref).strip()
    query = select(Case)
    if lock:
        query = query.with_for_update()
    # ASCII digits within BIGINT: 99999999999999999999999 is no case id (and would overflow)
    if ref.isascii() and ref.isdigit() and int(ref) < 2**63:
        case = session.scalars(query.where(Case.case_id == int(ref))).one_or_none()
        if case is not None:
            return case
    cases = list(session.scalars(query.where(Case.order_id == ref).order_by(Case.case_id)))
    if not cases:
        raise CaseNotFound(f"no case with id or order id {ref[:80]!r}")
    open_cases = [c for c in cases if not CaseState(c.state).is_terminal]
    return (open_cases or cases)[-1]


def perform_action(
    session: Session,
    action: OperatorAction | str,
    case_or_order_id: str,
    reason: str,
    operator: str,
    as_of: datetime,
    installation: Settings,
) -> dict[str, Any]:
    """Apply one operator action or raise ActionRefused with the reason."""
    action = OperatorAction(action) if action in {a.value for a in OperatorAction} else action
    case = resolve_case(session, case_or_order_id, lock=True)
    state = CaseState(case.state)
    problems: tuple[str, ...] = ()
    if action == OperatorAction.START and state is CaseState.BLOCKED:
        buyer = session.get(Buyer, case.order_id)
        values = {f: getattr(buyer, f) if buyer else None for f in REQUIRED_FIELDS}
        check = check_address(values)
        problems = tuple(
            [f"missing {f}" for f in check.missing] + [f"invalid {f}" for f in check.invalid]
        )
    target = decide(
        action,
        case.case_id,
        state,
        held_from_state=case.held_from_state,
        address_problems=problems,
        reason=reason,
    )
    values: dict[str, Any] = {}
    if target is CaseState.SCHEDULED and action == OperatorAction.START:
        ms = session.get(MerchantSettings, case.merchant_id)
        r1_days = ms.reminder_1_days if ms else installation.default_reminder_1_days
        values = {
            "started_at": as_of,
            "next_step_at": first_step_at(case.default_date, r1_days, as_of, installation.zone),
            "dunning_option": ms.dunning_option if ms else installation.default_option,
            "blocked_reason": None,
        }
    elif target is CaseState.CANCELLED:
        values = {
            "closed_at": as_of,
            "close_reason": f"cancelled by {operator}: {reason}",
            "next_step_at": None,
        }
    elif target is CaseState.ON_HOLD:
        values = {"held_from_state": state.value}
    elif action == OperatorAction.RESUME:
        values = {"held_from_state": None}
    if case.routed_at is None:
        values["routed_at"] = as_of
    moved = move_cases(
        session,
        [case.case_id],
        target,
        from_states=[state],
        actor=operator,
        reason=f"{action}: {reason}",
        as_of=as_of,
        values=values,
    )
    if not moved:
        raise ActionRefused(f"case {case.case_id} changed meanwhile; look again and retry")
    return {
        "case_id": case.case_id,
        "order_id": case.order_id,
        "merchant_id": case.merchant_id,
        "action": str(action),
        "from_state": state.value,
        "to_state": target.value,
        "next_step_at": values.get("next_step_at"),
    }


def case_action_core(
    action: str,
    case_or_order_id: str,
    reason: str,
    operator: str,
    as_of: datetime,
    database_url: str,
    installation: Settings | None = None,
) -> dict[str, Any]:
    """Plain-Python core of the case_action flow and `dunning case ...`: the action in one
    transaction, then the case's board row rewritten before returning (`board_as_of`: the
    board's time the row now shows; None when the board was never built or the rewrite
    failed, which leaves the row to the next refresh by the pending log)."""
    from sqlalchemy.exc import SQLAlchemyError

    from dunning.db import session_scope
    from dunning.tasks.report import refresh_cases

    installation = installation or get_settings()
    with session_scope(database_url) as session:
        result = perform_action(
            session, action, case_or_order_id, reason, operator, as_of, installation
        )
    try:
        result["board_as_of"] = refresh_cases(
            database_url, [result["case_id"]], timezone=installation.timezone
        )
    except SQLAlchemyError as exc:  # the action stands; the next refresh rewrites the row
        log.warning("case %s: board row not rewritten: %s", result["case_id"], exc)
        result["board_as_of"] = None
    return result


@task(name="case-action")  # no retries: a refusal is final
def case_action_task(
    action: str, case_or_order_id: str, reason: str, operator: str, as_of: datetime, url: str
) -> dict[str, Any]:
    """The action's result, or {"refused": why}: a refusal is an answer, so the task run
    completes (no traceback); the flow turns it into its "Refused" state."""
    try:
        return case_action_core(action, case_or_order_id, reason, operator, as_of, url)
    except ActionRefused as exc:
        return {"refused": str(exc)}
