"""The ladder as pure rules: facts + settings + as_of -> the one next step."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from dunning.models.enums import ActionStep, CaseState
from dunning.models.ladder import (
    CaseFacts,
    LadderSettings,
    due_at,
    next_step,
    quiet_move,
)

Z = ZoneInfo("Europe/Berlin")
CFG = LadderSettings(10, 10, 10)
DEFAULT = date(2026, 1, 15)


def local(day: date, hour: int = 0, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=Z).astimezone(UTC)


def facts(**kw) -> CaseFacts:
    base = dict(case_id=1, state="scheduled", dunning_option="court", default_date=DEFAULT)
    base.update(kw)
    return CaseFacts(**base)


def test_reminder_1_due_from_local_midnight_of_day_10():
    f = facts()
    assert next_step(f, CFG, local(date(2026, 1, 24), 23, 59), Z) is None
    step = next_step(f, CFG, local(date(2026, 1, 25)), Z)
    assert step.step == ActionStep.REMINDER_1 and step.to_state == CaseState.REMINDER_1
    # Its payment deadline is the day reminder 2 becomes due.
    assert step.deadline == date(2026, 2, 4)
    # 23:30 UTC on the 24th is already the 25th in Berlin.
    assert next_step(f, CFG, datetime(2026, 1, 24, 23, 30, tzinfo=UTC), Z) is not None


def test_started_late_by_operator_gets_full_gaps():
    start = local(date(2026, 3, 1), 14)
    f = facts(started_at=start)
    assert next_step(f, CFG, start - timedelta(hours=1), Z) is None
    assert next_step(f, CFG, start, Z).step == ActionStep.REMINDER_1
    # reminder 1 sent at the start: reminder 2 only ten days later, not an hour later.
    r1 = facts(state="reminder_1", reminder_1_at=start, started_at=start)
    assert next_step(r1, CFG, start + timedelta(hours=1), Z) is None
    assert next_step(r1, CFG, local(date(2026, 3, 10), 23), Z) is None
    assert next_step(r1, CFG, local(date(2026, 3, 11)), Z).step == ActionStep.REMINDER_2


def test_next_step_at_from_detection_is_a_floor():
    later = local(date(2026, 2, 10), 6)
    assert due_at(facts(next_step_at=later), CFG, Z) == later


def test_one_step_per_run_even_after_a_long_gap():
    f = facts(state="reminder_1", reminder_1_at=local(date(2026, 1, 25), 6))
    step = next_step(f, CFG, local(date(2026, 6, 1)), Z)
    assert step.step == ActionStep.REMINDER_2
    assert step.deadline == date(2026, 6, 11)  # counted from when it is sent


def test_handover_after_reminder_2_gap_with_merchant_days():
    cfg = LadderSettings(14, 7, 21)
    f = facts(state="reminder_2", reminder_2_at=local(date(2026, 2, 1), 9))
    assert next_step(f, cfg, local(date(2026, 2, 21), 23), Z) is None
    assert next_step(f, cfg, local(date(2026, 2, 22)), Z).step == ActionStep.HANDOVER
    assert due_at(facts(), cfg, Z) == local(date(2026, 1, 29))


@pytest.mark.parametrize(
    "state",
    [
        "awaiting_approval",
        "blocked",
        "on_hold",
        "paid",
        "cancelled",
        "uncollectible",
        "court",
        "order_cancelled",
    ],
)
def test_nothing_from_terminal_held_or_unstarted_states(state):
    f = facts(
        state=state,
        reminder_1_at=local(DEFAULT),
        reminder_2_at=local(DEFAULT),
        handed_over_at=local(DEFAULT),
        partner_claim_id="c",
        partner_status="unsuccessful",
    )
    assert next_step(f, CFG, local(date(2027, 1, 1)), Z) is None


def handed(**kw):
    base = dict(
        state="with_partner", handed_over_at=local(date(2026, 2, 14), 6), partner_claim_id="CL-1"
    )
    base.update(kw)
    return facts(**base)


def test_court_branch_only_when_partner_unsuccessful():
    later = local(date(2026, 3, 1))
    assert next_step(handed(partner_status="in_progress"), CFG, later, Z) is None
    step = next_step(handed(partner_status="unsuccessful"), CFG, later, Z)
    assert step.step == ActionStep.COURT_REQUEST and step.to_state == CaseState.COURT
    # The cancellation option never asks for a court.
    assert (
        next_step(
            handed(partner_status="unsuccessful", dunning_option="cancellation", payment_plan="x"),
            CFG,
            later,
            Z,
        ).step
        == ActionStep.CANCEL_ORDER
    )


def test_cancellation_branch_not_in_the_handover_run_itself():
    f = handed(dunning_option="cancellation")
    assert next_step(f, CFG, f.handed_over_at, Z) is None
    assert (
        next_step(f, CFG, f.handed_over_at + timedelta(days=1), Z).step == ActionStep.CANCEL_ORDER
    )


def test_498_termination_notice_first_with_at_least_14_days():
    """§ 498 (1) Nr. 2 BGB: an installment plan whose guard holds gets the notice, not the
    cancellation; the notice names a deadline 14 days ahead."""
    f = handed(dunning_option="cancellation", payment_plan="breakdown_payment")
    at = f.handed_over_at + timedelta(days=1)
    assert next_step(f, CFG, at, Z) is None  # guard does not hold: stays with the partner
    f = replace(f, termination_allowed=True)
    step = next_step(f, CFG, at, Z)
    assert step.step == ActionStep.TERMINATION_NOTICE
    assert step.to_state == CaseState.TERMINATION_NOTICE
    assert step.deadline == at.astimezone(Z).date() + timedelta(days=14)


def test_498_cancel_only_after_the_deadline_and_if_the_guard_still_holds():
    deadline_over = local(date(2026, 3, 1))
    notice = handed(
        state="termination_notice",
        dunning_option="cancellation",
        payment_plan="breakdown_payment",
        next_step_at=deadline_over,
        termination_allowed=True,
    )
    assert next_step(notice, CFG, deadline_over - timedelta(seconds=1), Z) is None
    assert next_step(notice, CFG, deadline_over, Z).step == ActionStep.CANCEL_ORDER
    assert quiet_move(notice, None, deadline_over, Decimal("5")) is None
    paid_up = replace(notice, termination_allowed=False)
    assert next_step(paid_up, CFG, deadline_over, Z) is None
    to_state, reason = quiet_move(paid_up, None, deadline_over, Decimal("5"))
    assert to_state == CaseState.WITH_PARTNER and "notice period" in reason


def test_one_time_and_subscription_cancel_without_a_498_notice():
    for p in ("one_time_payment", "abonnement"):
        f = handed(dunning_option="cancellation", payment_plan=p)
        assert next_step(f, CFG, f.handed_over_at + timedelta(days=1), Z).step == (
            ActionStep.CANCEL_ORDER
        )


def test_minimum_claim_closes_instead_of_handover_or_court():
    f = facts(
        state="reminder_2",
        reminder_2_at=local(date(2026, 2, 1), 9),
        below_minimum=True,
        open_principal=Decimal("3.10"),
    )
    at = local(date(2026, 2, 11))
    step = next_step(f, CFG, at, Z)
    assert step.step == ActionStep.HANDOVER
    to_state, reason = quiet_move(f, step, at, Decimal("5.00"))
    assert to_state == CaseState.UNCOLLECTIBLE
    assert reason == "open principal 3.10 below the minimum claim 5.00: not handed over"
    court = handed(partner_status="unsuccessful", below_minimum=True)
    step = next_step(court, CFG, court.handed_over_at + timedelta(days=1), Z)
    assert quiet_move(court, step, at, Decimal("5.00"))[0] == CaseState.UNCOLLECTIBLE
