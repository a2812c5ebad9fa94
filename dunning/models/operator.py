"""Operator actions on a case (SPEC §3): which is allowed from which state. Pure.

- start:  from `awaiting_approval`; from `blocked` only once the address is complete
          -> `scheduled` (the ladder's first step due per the merchant's schedule);
- cancel: from any non-terminal state -> `cancelled` (a claim with the partner is recalled
          by the escalation step);
- hold:   from a state of the ladder (in progress) -> `on_hold`, remembering where it was;
- resume: from `on_hold` -> the state it was held from.
A refusal is an `ActionRefused` whose message says why, e.g. "case 17 is paid; nothing to
cancel".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from dunning.models.enums import IN_PROGRESS_STATES, TERMINAL_STATES, CaseState


class OperatorAction(StrEnum):
    START = "start"
    CANCEL = "cancel"
    HOLD = "hold"
    RESUME = "resume"
    # The order was cancelled at the platform by hand (the pipeline could not): record it.
    CONFIRM_CANCELLATION = "confirm-cancellation"


class ActionRefused(ValueError):
    """An operator action the rules do not allow; the message says why."""


def decide(
    action: OperatorAction | str,
    case_id: int,
    state: CaseState | str,
    *,
    held_from_state: CaseState | str | None = None,
    address_problems: Sequence[str] = (),
    reason: str | None = "",
) -> CaseState:
    """The state the action moves the case to, or raise ActionRefused with the reason."""
    try:
        action = OperatorAction(action)
    except ValueError:
        allowed = ", ".join(a.value for a in OperatorAction)
        raise ActionRefused(f"unknown action {action!r}; use one of: {allowed}") from None
    state = CaseState(state)
    if reason is not None and not reason.strip():
        raise ActionRefused(f"a reason is required to {action} case {case_id} (--reason TEXT)")
    if state in TERMINAL_STATES:
        raise ActionRefused(f"case {case_id} is {state}; nothing to {action}")

    if action is OperatorAction.CANCEL:
        return CaseState.CANCELLED

    if action is OperatorAction.CONFIRM_CANCELLATION:
        if state is CaseState.AWAITING_CANCELLATION:
            return CaseState.ORDER_CANCELLED
        raise ActionRefused(
            f"case {case_id} is {state}, not waiting for a cancellation at the platform; "
            "nothing to confirm"
        )

    if action is OperatorAction.START:
        if state is CaseState.AWAITING_APPROVAL:
            return CaseState.SCHEDULED
        if state is CaseState.BLOCKED:
            if address_problems:
                raise ActionRefused(
                    f"case {case_id} is blocked: address incomplete "
                    f"({', '.join(address_problems)}); fix the address at the source and sync"
                )
            return CaseState.SCHEDULED
        raise ActionRefused(f"case {case_id} is already started ({state}); nothing to start")

    if action is OperatorAction.HOLD:
        if state is CaseState.ON_HOLD:
            raise ActionRefused(f"case {case_id} is already on hold")
        if state in IN_PROGRESS_STATES:
            return CaseState.ON_HOLD
        raise ActionRefused(
            f"case {case_id} is {state}, not in the dunning ladder; nothing to hold "
            "(start or cancel it instead)"
        )

    # resume
    if state is not CaseState.ON_HOLD:
        raise ActionRefused(f"case {case_id} is {state}, not on hold; nothing to resume")
    if held_from_state is None:
        return CaseState.SCHEDULED
    target = CaseState(held_from_state)
    if target in TERMINAL_STATES or target is CaseState.ON_HOLD:
        return CaseState.SCHEDULED
    return target


def first_step_at(default_date: date, reminder_1_days: int, as_of: datetime, zone: ZoneInfo):
    """When a case entering the ladder gets reminder 1: local midnight of default date +
    reminder_1_days, or now if that has passed (a late start still keeps the later gaps)."""
    day = default_date + timedelta(days=reminder_1_days)
    due = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    return max(due, as_of)


def login_name() -> str:
    """Who acts when no operator is given: the login name (one default everywhere: the CLI's
    `--operator`, the operator flows' `operator` parameter), else "operator"."""
    import getpass

    try:
        return getpass.getuser() or "operator"
    except Exception:
        return "operator"
