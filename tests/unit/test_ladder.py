"""The ladder as pure rules: facts + settings + as_of -> the one next step."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from dunning.models.enums import ActionStep, CaseState
from dunning.models.ladder import (
    CaseFacts,
    InstallmentFact,
    LadderSettings,
    cancellation_allowed,
    due_at,
    next_step,
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


def plan(count, amount, every_days, paid_numbers=(), total=None):
    insts = []
    for n in range(1, count + 1):
        due = date(2026, 1, 15) + timedelta(days=every_days * (n - 1))
        open_ = Decimal(0) if n in paid_numbers else Decimal(amount)
        insts.append(InstallmentFact(n, due, Decimal(amount), open_))
    return dict(
        payment_plan="breakdown_payment",
        installments=tuple(insts),
        order_total=Decimal(total or Decimal(amount) * count),
    )


@pytest.mark.parametrize(
    ("today", "paid", "allowed"),
    [
        (date(2026, 1, 20), (), False),  # one installment in default
        (date(2026, 2, 20), (), False),  # two: 100 of 1200 < 10 %
        (date(2026, 3, 20), (), True),  # three consecutive: 150 >= 120
        (date(2026, 3, 20), (2,), False),  # 1 and 3 in default, not consecutive
        (date(2026, 4, 20), (2,), True),  # 3 and 4 consecutive, 150 >= 120
    ],
)
def test_498_guard_for_installment_plans(today, paid, allowed):
    f = handed(dunning_option="cancellation", **plan(24, "50.00", 30, paid))
    assert cancellation_allowed(f, local(today, 6), Z) is allowed


def test_498_five_percent_for_terms_over_three_years():
    # 48 monthly installments of 25.00 = 1200.00 over ~3.9 years: 5 % = 60.00.
    f = handed(dunning_option="cancellation", **plan(48, "25.00", 30))
    assert cancellation_allowed(f, local(date(2026, 2, 20), 6), Z) is False  # 50.00 < 60.00
    assert cancellation_allowed(f, local(date(2026, 3, 20), 6), Z) is True  # 75.00 >= 60.00


def test_498_ten_percent_for_three_years_or_less():
    # 36 installments of 25.00 = 900.00 over 35 * 30 days (< 3 years): 10 % = 90.00.
    f = handed(dunning_option="cancellation", **plan(36, "25.00", 30))
    assert cancellation_allowed(f, local(date(2026, 3, 20), 6), Z) is False  # 75.00 < 90.00


def test_one_time_and_subscription_cancel_at_handover():
    for p in ("one_time_payment", "abonnement"):
        assert cancellation_allowed(handed(payment_plan=p), local(date(2026, 2, 15)), Z)
