"""The claim ledger (SPEC §3a): one named test per rule, with its paragraph, and properties
over random event histories."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dunning.models.base_rates import BaseRateUnknown, base_rates, build, parse_table
from dunning.models.ledger import (
    CHARGEBACK_FEE,
    FLAT_FEE,
    REMINDER_FEE,
    Charge,
    Ledger,
    Payment,
    PrincipalItem,
    ScheduleEntry,
    arrears,
    below_minimum,
    default_begins,
    reminder_fee,
    replay,
    termination_guard,
)

D = Decimal
RATES = base_rates()


def item(ref, due, amount, default_from="next", number=None):
    start = due + timedelta(days=1) if default_from == "next" else default_from
    return PrincipalItem(ref, due, D(amount), start, number)


def test_worked_example_367_then_288_gives_54_71():
    """SPEC §3a: 100.00 due 2025-01-10, 50.00 paid 2025-06-10, as of 2025-12-10."""
    ledger = Ledger(
        items=(item("p", date(2025, 1, 10), "100.00"),),
        payments=(Payment(date(2025, 6, 10), D("50.00")),),
        interest=True,
    )
    s = replay(ledger, date(2025, 12, 10), RATES)
    first = s.interest_periods[0]
    assert (first.start, first.end, first.days, first.rate_percent) == (
        date(2025, 1, 11),
        date(2025, 6, 10),
        151,
        D("7.27"),
    )
    assert first.amount == D("3.01")
    alloc = s.allocations[0]
    assert (alloc.to_interest, alloc.to_principal) == (D("3.01"), D("46.99"))
    assert s.principal_open == D("53.01")
    later = s.interest_periods[1:]
    assert [(p.days, p.rate_percent) for p in later] == [(20, D("7.27")), (163, D("6.27"))]
    assert sum(p.amount for p in later) == D("1.70")
    assert s.total_open == D("54.71")


def test_288_interest_without_payments_runs_from_the_day_after_the_due_date():
    ledger = Ledger(items=(item("p", date(2026, 1, 10), "365.00"),), interest=True)
    assert replay(ledger, date(2026, 1, 10), RATES).interest == 0
    s = replay(ledger, date(2026, 1, 11), RATES)  # one day at 6.27 %
    assert s.interest == D("0.06") and s.total_open == D("365.06")


def test_288_interest_off_when_the_merchant_did_not_switch_it_on():
    ledger = Ledger(items=(item("p", date(2025, 1, 10), "100.00"),), interest=False)
    assert replay(ledger, date(2025, 12, 10), RATES).total_open == D("100.00")


def test_288_base_rate_change_inside_a_period_splits_it():
    ledger = Ledger(items=(item("p", date(2025, 6, 20), "1000.00"),), interest=True)
    s = replay(ledger, date(2025, 7, 10), RATES)
    assert [(p.start, p.end, p.rate_percent) for p in s.interest_periods] == [
        (date(2025, 6, 21), date(2025, 6, 30), D("7.27")),
        (date(2025, 7, 1), date(2025, 7, 10), D("6.27")),
    ]
    exact = D(1000) * (D("7.27") * 10 + D("6.27") * 10) / 100 / 365
    assert s.interest == exact.quantize(D("0.01"))  # rounded once for the span: 3.71


def test_289_leap_year_days_count_at_rate_over_366():
    ledger = Ledger(items=(item("p", date(2023, 12, 31), "36600.00"),), interest=True)
    s = replay(ledger, date(2024, 1, 10), RATES)  # 2024: 3.62 + 5 = 8.62 %, 10 days / 366
    assert s.interest == D("86.20")
    across = Ledger(items=(item("p", date(2023, 12, 29), "1000.00"),), interest=True)
    periods = replay(across, date(2024, 1, 2), RATES).interest_periods
    assert [(p.start, p.end) for p in periods] == [
        (date(2023, 12, 30), date(2023, 12, 31)),
        (date(2024, 1, 1), date(2024, 1, 2)),
    ]


def test_289_no_interest_on_fees_or_on_interest():
    fee = Charge(REMINDER_FEE, date(2025, 2, 1), D("2.50"), "reminder 1")
    with_fee = Ledger(
        items=(item("p", date(2025, 1, 10), "100.00"),), charges=(fee,), interest=True
    )
    without = Ledger(items=(item("p", date(2025, 1, 10), "100.00"),), interest=True)
    a, b = replay(with_fee, date(2025, 12, 10), RATES), replay(without, date(2025, 12, 10), RATES)
    assert a.interest == b.interest and a.total_open == b.total_open + D("2.50")
    assert all(p.principal_base == D("100.00") for p in b.interest_periods)


def test_367_payment_smaller_than_the_fees_pays_fees_only():
    fee = Charge(REMINDER_FEE, date(2025, 2, 1), D("5.00"), "reminder 1")
    ledger = Ledger(
        items=(item("p", date(2025, 1, 10), "100.00"),),
        charges=(fee,),
        payments=(Payment(date(2025, 3, 1), D("3.00")),),
        interest=True,
    )
    s = replay(ledger, date(2025, 3, 1), RATES)
    alloc = s.allocations[0]
    assert (alloc.to_charges, alloc.to_interest, alloc.to_principal) == (D("3.00"), 0, 0)
    assert s.charges_open == D("2.00") and s.principal_open == D("100.00")


def test_367_principal_is_paid_oldest_due_first():
    ledger = Ledger(
        items=(
            item("i2", date(2025, 2, 10), "50.00", number=2),
            item("i1", date(2025, 1, 10), "50.00", number=1),
        ),
        payments=(Payment(date(2025, 3, 1), D("70.00")),),
    )
    s = replay(ledger, date(2025, 3, 2), RATES)
    assert s.open_items == {"i1": D("0.00"), "i2": D("30.00")}


def test_367_payments_of_one_day_are_one_payment_whatever_their_order():
    items = (item("p", date(2025, 1, 10), "100.00"),)
    p1, p2 = Payment(date(2025, 4, 1), D("10.00"), "a"), Payment(date(2025, 4, 1), D("20.00"), "b")
    one = replay(Ledger(items, (p1, p2), interest=True), date(2025, 9, 1), RATES)
    two = replay(Ledger(items, (p2, p1), interest=True), date(2025, 9, 1), RATES)
    assert one == two and len(one.allocations) == 1


def test_overpayment_is_a_credit_for_what_arises_later():
    items = (item("p", date(2025, 1, 10), "100.00"),)
    late_fee = Charge(REMINDER_FEE, date(2025, 3, 1), D("2.50"), "reminder 2")
    s = replay(
        Ledger(items, (Payment(date(2025, 1, 10), D("110.00")),), (late_fee,)),
        date(2025, 4, 1),
        RATES,
    )
    assert s.total_open == 0 and s.overpaid == D("7.50")


def test_286_chargeback_interest_from_the_chargeback_and_not_on_its_fee():
    """A paid installment charged back on 2025-05-05: in default from 05-06; the bank's fee
    is a charge of that day, without interest."""
    start = default_begins(due_date=date(2025, 1, 10), chargeback_day=date(2025, 5, 5))
    assert start == date(2025, 5, 6)
    fee = Charge(CHARGEBACK_FEE, date(2025, 5, 5), D("15.00"), "bank fee MD06")
    ledger = Ledger(
        items=(PrincipalItem("p", date(2025, 1, 10), D("100.00"), start),),
        charges=(fee,),
        interest=True,
    )
    s = replay(ledger, date(2025, 6, 4), RATES)
    assert s.interest_periods[0].start == date(2025, 5, 6)
    assert s.interest_periods[0].principal_base == D("100.00")
    assert s.interest == D("0.60")  # 30 days at 7.27 % on 100.00, nothing on 15.00
    assert s.total_open == D("115.60")


def test_286_invoice_in_default_after_the_first_reminders_deadline_which_carries_no_fee():
    due = date(2025, 3, 1)
    assert default_begins(due_date=due, invoice=True) is None  # no reminder yet
    start = default_begins(due_date=due, invoice=True, first_reminder_deadline=date(2025, 3, 21))
    assert start == date(2025, 3, 22)
    assert reminder_fee(1, creates_default=True, merchant_fee=D("2.50"), cap=D("2.50")) == 0
    assert reminder_fee(2, creates_default=False, merchant_fee=D("2.50"), cap=D("2.50")) == D(
        "2.50"
    )
    ledger = Ledger(items=(PrincipalItem("p", due, D("100.00"), start),), interest=True)
    assert replay(ledger, date(2025, 3, 21), RATES).interest == 0
    assert replay(ledger, date(2025, 3, 22), RATES).interest_periods[0].start == start


def test_286_3_business_invoice_in_default_30_days_after_the_invoice():
    start = default_begins(
        due_date=date(2025, 3, 1), invoice=True, business=True, invoice_day=date(2025, 3, 1)
    )
    assert start == date(2025, 4, 1)


def test_288_business_debtor_nine_points_and_the_40_euro_flat_fee():
    items = (item("p", date(2025, 7, 10), "1000.00"),)
    s = replay(Ledger(items, business=True, interest=True), date(2025, 8, 9), RATES)
    assert s.interest_periods[0].rate_percent == D("10.27")
    flat = [c for c in s.charges if c.kind == FLAT_FEE]
    assert flat == [flat[0]] and flat[0].amount == D("40.00")
    assert flat[0].day == date(2025, 7, 11)
    assert s.interest == D("8.44")  # 30 days at 10.27 % on 1000.00
    assert s.total_open == D("1048.44")
    consumer = replay(Ledger(items, interest=True), date(2025, 8, 9), RATES)
    assert not [c for c in consumer.charges if c.kind == FLAT_FEE]
    other = replay(Ledger(items, business=True, currency="CHF"), date(2025, 8, 9), RATES)
    assert not [c for c in other.charges if c.kind == FLAT_FEE]


def test_reminder_fee_never_above_the_installation_cap():
    assert reminder_fee(2, False, D("99.00"), cap=D("2.50")) == D("2.50")
    assert reminder_fee(1, False, D("1.20"), cap=D("2.50")) == D("1.20")


def test_minimum_claim_only_fees_or_interest_left():
    fee = Charge(REMINDER_FEE, date(2025, 2, 1), D("2.50"), "reminder 1")
    ledger = Ledger(
        items=(item("p", date(2025, 1, 10), "100.00"),),
        charges=(fee,),
        payments=(Payment(date(2025, 3, 1), D("97.00")),),
    )
    s = replay(ledger, date(2025, 3, 2), RATES)
    assert s.principal_open == D("5.50") and not below_minimum(s, D("5.00"))
    s = replay(
        Ledger(ledger.items, (*ledger.payments, Payment(date(2025, 3, 2), D("3.00"))), (fee,)),
        date(2025, 3, 3),
        RATES,
    )
    assert s.principal_open == D("2.50") and below_minimum(s, D("5.00"))


def _plan(amounts, first=date(2025, 1, 10)):
    """Monthly installments of a plan (30 days apart), each in default from its next day."""
    return [
        item(f"i{n}", first + timedelta(days=30 * (n - 1)), a, number=n)
        for n, a in enumerate(amounts, start=1)
    ]


def test_498_two_consecutive_installments_and_ten_percent_in_default():
    items = _plan(["100.00"] * 6)
    schedule = [ScheduleEntry(i.number, i.due_date) for i in items]
    order_day = date(2025, 1, 1)
    only_one = replay(Ledger(tuple(items[:1])), date(2025, 2, 1), RATES)
    assert not termination_guard(only_one, schedule, D("600.00"), order_day)
    two = replay(Ledger(tuple(items[:2])), date(2025, 2, 20), RATES)
    assert termination_guard(two, schedule, D("600.00"), order_day)
    assert arrears(two) == D("200.00")
    # Not consecutive: installments 1 and 3 in default, 2 paid.
    gap = Ledger(
        (items[0], items[2]),
    )
    assert not termination_guard(
        replay(gap, date(2025, 3, 20), RATES), schedule, D("600.00"), order_day
    )


def test_498_ten_percent_of_the_price_five_over_three_years():
    items = _plan(["30.00", "30.00"])
    schedule = [ScheduleEntry(n, date(2025, 1, 10) + timedelta(days=30 * (n - 1))) for n in (1, 2)]
    s = replay(Ledger(tuple(items)), date(2025, 2, 20), RATES)
    assert not termination_guard(s, schedule, D("1000.00"), date(2025, 1, 1))  # 6 % < 10 %
    long = [*schedule, ScheduleEntry(48, date(2029, 1, 10))]
    assert termination_guard(s, long, D("1000.00"), date(2025, 1, 1))  # > 3 years: 5 %


def test_498_a_refunded_installment_is_not_in_default():
    """The refund lowers what is owed for its item: installment 2, refunded in full, owes 0,
    so only installment 1 is in default."""
    items = _plan(["100.00", "0.00"])
    schedule = [ScheduleEntry(i.number, i.due_date) for i in items]
    s = replay(Ledger(tuple(items)), date(2025, 2, 20), RATES)
    assert not termination_guard(s, schedule, D("200.00"), date(2025, 1, 1))


def test_498_paying_the_arrears_ends_the_guard():
    items = _plan(["100.00", "100.00", "100.00"])
    schedule = [ScheduleEntry(i.number, i.due_date) for i in items]
    paid = Ledger(tuple(items[:2]), (Payment(date(2025, 2, 25), D("100.00")),))
    s = replay(paid, date(2025, 3, 1), RATES)
    assert not termination_guard(s, schedule, D("300.00"), date(2025, 1, 1))


def test_base_rates_refuse_days_before_the_table_and_flag_days_past_it():
    with pytest.raises(BaseRateUnknown, match="table starts on 2020-01-01"):
        RATES.rate_on(date(2019, 12, 31))
    assert RATES.rate_on(date(2026, 3, 1)) == D("1.27")
    assert not RATES.stale(RATES.known_until) and RATES.stale(RATES.known_until + timedelta(1))
    ledger = Ledger(items=(item("p", RATES.known_until, "100.00"),), interest=True)
    assert replay(ledger, RATES.known_until + timedelta(days=5), RATES).rates_stale
    assert not replay(ledger, RATES.known_until, RATES).rates_stale


def test_base_rates_are_extended_by_a_file_without_a_code_change(tmp_path):
    extra = tmp_path / "rates.toml"
    extra.write_text('known_until = 2026-12-31\nrates = [{ from = 2026-07-01, percent = "1.50" }]')
    rates = base_rates(extra)
    assert rates.rate_on(date(2026, 8, 1)) == D("1.50") and rates.known_until == date(2026, 12, 31)
    assert rates.rate_on(date(2026, 6, 30)) == D("1.27")
    bad = tmp_path / "bad.toml"
    bad.write_text("rates = [{ from = 'soon', percent = 'x' }]")
    with pytest.raises(BaseRateUnknown, match="not a base-rate table"):
        build(parse_table(bad.read_text(), "bad.toml"))


# --- properties over random histories -------------------------------------------------------

START = date(2024, 1, 1)
money = st.decimals(min_value=D("0.01"), max_value=D("500"), places=2)
days = st.integers(min_value=0, max_value=700)


@st.composite
def histories(draw):
    n = draw(st.integers(1, 4))
    items = tuple(
        item(f"i{k}", START + timedelta(days=draw(days)), draw(money), number=k)
        for k in range(1, n + 1)
    )
    payments = tuple(
        Payment(START + timedelta(days=draw(days)), draw(money), f"t{k}")
        for k in range(draw(st.integers(0, 5)))
    )
    charges = tuple(
        Charge(REMINDER_FEE, START + timedelta(days=draw(days)), draw(money), "r", f"c{k}")
        for k in range(draw(st.integers(0, 3)))
    )
    ledger = Ledger(items, payments, charges, business=draw(st.booleans()), interest=True)
    return ledger, START + timedelta(days=draw(st.integers(0, 900)))


@settings(max_examples=150, deadline=None)
@given(histories())
def test_property_allocations_sum_to_payments_and_nothing_is_negative(case):
    ledger, as_of = case
    s = replay(ledger, as_of, RATES)
    applied = sum((a.to_charges + a.to_interest + a.to_principal for a in s.allocations), D(0))
    assert applied + s.overpaid == s.paid
    assert min(s.open_items.values()) >= 0 and s.charges_open >= 0 and s.interest_open >= 0
    assert s.total_open >= 0 and s.overpaid >= 0
    assert s.total_open == 0 or s.overpaid == 0


@settings(max_examples=150, deadline=None)
@given(histories())
def test_property_open_is_principal_fees_costs_interest_minus_payments(case):
    ledger, as_of = case
    s = replay(ledger, as_of, RATES)
    gross = s.principal + s.fees + s.costs + s.interest
    assert s.total_open == gross - s.paid + s.overpaid


@settings(max_examples=150, deadline=None)
@given(histories())
def test_property_interest_never_on_interest_or_fees(case):
    ledger, as_of = case
    s = replay(ledger, as_of, RATES)
    for p in s.interest_periods:
        assert p.principal_base <= s.principal  # the base is principal in default, no more
    without_fees = replay(
        Ledger(ledger.items, ledger.payments, (), ledger.business, True), as_of, RATES
    )
    # Fees take payments first, so principal stays open longer: never less interest, and
    # the base of every period is principal only.
    assert s.interest >= without_fees.interest


@settings(max_examples=150, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_property_replay_is_deterministic_and_independent_of_event_order(case, rnd):
    ledger, as_of = case
    payments, charges, items = list(ledger.payments), list(ledger.charges), list(ledger.items)
    rnd.shuffle(payments), rnd.shuffle(charges), rnd.shuffle(items)
    shuffled = Ledger(tuple(items), tuple(payments), tuple(charges), ledger.business, True)
    assert replay(ledger, as_of, RATES) == replay(shuffled, as_of, RATES)
