"""Property-based tests (hypothesis) of the pure rules: claims, money, the ladder.

Random payment histories and run dates; max_examples kept modest so the file runs in
seconds (HYPOTHESIS_PROFILE=full for a deeper run).
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from dunning.models.claims import Installment, Txn, installment_facts, new_claim, overdue_days
from dunning.models.enums import ActionStep, CaseState, DunningOption, PaymentPlan
from dunning.models.ladder import CaseFacts, LadderSettings, next_step
from dunning.models.ledger import cents

BERLIN = ZoneInfo("Europe/Berlin")
EXAMPLES = 1000 if os.environ.get("HYPOTHESIS_PROFILE") == "full" else 150
settings.register_profile("reliability", max_examples=EXAMPLES, deadline=None)
settings.load_profile("reliability")

money = st.integers(min_value=0, max_value=200_000).map(lambda c: Decimal(c) / 100)
BASE = date(2025, 11, 1)


@st.composite
def histories(draw):
    """An order's installments and a history of sales, refunds and chargebacks."""
    n = draw(st.integers(1, 6))
    insts = [
        Installment(i + 1, BASE + timedelta(days=30 * i), draw(money.filter(lambda m: m > 0)))
        for i in range(n)
    ]
    txns: list[Txn] = []
    for inst in insts:
        if not draw(st.booleans()):
            continue
        amount = draw(st.sampled_from([inst.amount, cents(inst.amount / 2), inst.amount * 2]))
        at = datetime.combine(
            inst.due_date + timedelta(days=draw(st.integers(-5, 40))), time(9), tzinfo=UTC
        )
        sid = f"s{inst.number}"
        txns.append(Txn(sid, "sale", amount, at, inst.number))
        reverse = draw(st.sampled_from([None, "refund", "chargeback"]))
        if reverse:
            part = draw(st.sampled_from([amount, cents(amount / 3)]))
            later = at + timedelta(days=draw(st.integers(1, 30)))
            fee = draw(st.sampled_from([None, Decimal("3.50")]))
            txns.append(Txn(f"r{inst.number}", reverse, part, later, None, sid, fee))
    return insts, txns


run_dates = st.integers(0, 400).map(
    lambda d: datetime.combine(BASE + timedelta(days=d), time(6), tzinfo=BERLIN).astimezone(UTC)
)


@given(histories(), run_dates, money, money)
def test_claim_never_negative(history, as_of, fees, interest):
    insts, txns = history
    facts = installment_facts(insts, txns, as_of, BERLIN, Decimal("2.00"))
    claim = new_claim(facts, as_of.astimezone(BERLIN).date())
    if claim is None:
        return
    assert claim.principal >= 0 and claim.paid >= 0 and claim.fees >= 0
    # Allocation and interest: properties of the claim ledger (tests/unit/test_ledger.py).


@given(histories(), run_dates, st.integers(0, 200))
def test_overdue_days_monotone_in_as_of(history, t1, extra_days):
    """With the payment history fixed (all before the first date), a later run never
    sees fewer overdue days."""
    insts, txns = history
    t2 = t1 + timedelta(days=extra_days)
    txns = [t for t in txns if t.processed_at <= t1]

    def days_at(t: datetime) -> int:
        today = t.astimezone(BERLIN).date()
        claim = new_claim(installment_facts(insts, txns, t, BERLIN), today)
        return overdue_days(today, claim.default_date) if claim else 0

    assert days_at(t1) <= days_at(t2)


@given(st.dates(date(2025, 1, 1), date(2027, 1, 1)), st.integers(0, 500), st.integers(0, 500))
def test_overdue_days_monotone_pure(unpaid, a, b):
    t1, t2 = sorted((unpaid + timedelta(days=a - 100), unpaid + timedelta(days=b - 100)))
    assert 0 <= overdue_days(t1, unpaid) <= overdue_days(t2, unpaid)


LADDER = [ActionStep.REMINDER_1, ActionStep.REMINDER_2, ActionStep.HANDOVER]
FROM = {
    ActionStep.REMINDER_1: CaseState.SCHEDULED,
    ActionStep.REMINDER_2: CaseState.REMINDER_1,
    ActionStep.HANDOVER: CaseState.REMINDER_2,
    ActionStep.TERMINATION_NOTICE: CaseState.WITH_PARTNER,
    ActionStep.CANCEL_ORDER: (CaseState.WITH_PARTNER, CaseState.TERMINATION_NOTICE),
    ActionStep.COURT_REQUEST: CaseState.WITH_PARTNER,
}
TERMINAL = {CaseState.PAID, CaseState.CANCELLED, CaseState.UNCOLLECTIBLE}


@given(
    gaps=st.tuples(st.integers(1, 20), st.integers(1, 20), st.integers(1, 20)),
    option=st.sampled_from([DunningOption.COURT, DunningOption.CANCELLATION]),
    plan=st.sampled_from([PaymentPlan.ONE_TIME, PaymentPlan.INSTALLMENTS]),
    runs=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 23)), min_size=1, max_size=25),
    events=st.lists(
        st.sampled_from(["none", "none", "none", "hold", "resume", "paid", "cancel", "fail"]),
        min_size=25,
        max_size=25,
    ),
    default_day=st.integers(0, 60),
)
def test_ladder_one_step_per_run_in_order_never_after_terminal(
    gaps, option, plan, runs, events, default_day
):
    """Simulate a case over random run times (gaps of 0-30 days, any hour) with operator
    holds, payments, cancels and partner failures between runs."""
    cfg = LadderSettings(*gaps)
    default = BASE + timedelta(days=default_day)
    state = CaseState.SCHEDULED
    held_from: CaseState | None = None
    times: dict[str, datetime | None] = {"r1": None, "r2": None, "ho": None, "tn": None}
    partner_status: str | None = None
    taken: list[ActionStep] = []
    as_of = datetime.combine(default, time(0), tzinfo=BERLIN).astimezone(UTC)
    for (gap_days, hour), event in zip(runs, events, strict=False):
        as_of = as_of + timedelta(days=gap_days, hours=hour)
        facts = CaseFacts(
            case_id=1,
            state=state.value,
            dunning_option=option.value,
            default_date=default,
            payment_plan=plan.value,
            started_at=None,
            reminder_1_at=times["r1"],
            reminder_2_at=times["r2"],
            handed_over_at=times["ho"],
            partner_claim_id="CL-1" if times["ho"] else None,
            partner_status=partner_status,
            order_total=Decimal("200"),
            next_step_at=times["tn"],
            termination_allowed=True,  # the § 498 guard holds throughout
        )
        step = next_step(facts, cfg, as_of, BERLIN)  # one call = one run: at most one step
        if state in TERMINAL or state == CaseState.ON_HOLD:
            assert step is None, (state, step)
        if step is not None:
            allowed = FROM[step.step]
            allowed = allowed if isinstance(allowed, tuple) else (allowed,)
            assert state in allowed, "a step only from its own state: none skipped"
            local = as_of.astimezone(BERLIN).date()
            if step.step == ActionStep.REMINDER_1:
                assert local >= default + timedelta(days=cfg.reminder_1_days)
                times["r1"] = as_of
            elif step.step == ActionStep.REMINDER_2:
                assert local >= times["r1"].astimezone(BERLIN).date() + timedelta(
                    days=cfg.reminder_2_days
                )
                times["r2"] = as_of
            elif step.step == ActionStep.HANDOVER:
                assert local >= times["r2"].astimezone(BERLIN).date() + timedelta(
                    days=cfg.handover_days
                )
                times["ho"] = as_of
            elif step.step == ActionStep.TERMINATION_NOTICE:
                assert step.deadline >= local + timedelta(days=14)
                times["tn"] = datetime.combine(
                    step.deadline + timedelta(days=1), time(0), tzinfo=BERLIN
                ).astimezone(UTC)
            elif step.step == ActionStep.CANCEL_ORDER and plan == PaymentPlan.INSTALLMENTS:
                assert times["tn"] is not None and as_of >= times["tn"], "notice period kept"
            taken.append(step.step)
            state = step.to_state
        # the world between runs
        if state in TERMINAL:
            continue
        if event == "hold" and state != CaseState.ON_HOLD:
            held_from, state = state, CaseState.ON_HOLD
        elif event == "resume" and state == CaseState.ON_HOLD:
            state, held_from = held_from or CaseState.SCHEDULED, None
        elif event == "paid":
            state = CaseState.PAID
        elif event == "cancel":
            state = CaseState.CANCELLED
        elif event == "fail" and times["ho"]:
            partner_status = "unsuccessful"
    # the ladder order, never skipped, never repeated
    assert taken[:3] == LADDER[: len(taken[:3])]
    assert len(taken) == len(set(taken)) and len(taken) <= 5
    if len(taken) >= 4:
        if option == DunningOption.COURT:
            expected = [ActionStep.COURT_REQUEST]
        elif plan == PaymentPlan.INSTALLMENTS:
            expected = [ActionStep.TERMINATION_NOTICE, ActionStep.CANCEL_ORDER]
        else:
            expected = [ActionStep.CANCEL_ORDER]
        assert taken[3:] == expected[: len(taken) - 3]
