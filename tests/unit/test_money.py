"""Payment allocation (§ 367 BGB) and default interest (§ 288 BGB) from the base-rate table."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from dunning.models.base_rates import BASE_RATES, base_rate_on
from dunning.models.money import (
    allocate,
    claim_interest,
    default_interest,
    interest_rate,
    reduce_oldest_first,
)

D = Decimal


def test_allocation_costs_then_interest_then_principal():
    a = allocate(D("12.00"), costs=D("5.00"), interest=D("3.00"), principal=D("100.00"))
    assert (a.costs_open, a.interest_open, a.principal_open) == (D("0.00"), D("0.00"), D("96.00"))
    assert (a.to_costs, a.to_interest, a.to_principal) == (D("5.00"), D("3.00"), D("4.00"))
    a = allocate(D("6.00"), D("5.00"), D("3.00"), D("100.00"))
    assert (a.costs_open, a.interest_open, a.principal_open) == (D("0.00"), D("2.00"), D("100.00"))
    a = allocate(D("2.00"), D("5.00"), D("3.00"), D("100.00"))
    assert a.costs_open == D("3.00") and a.total_open == D("106.00")


def test_allocation_overpayment_and_nothing_paid():
    a = allocate(D("200.00"), D("5.00"), D("3.00"), D("100.00"))
    assert a.total_open == 0 and a.overpaid == D("92.00")
    assert allocate(D("0"), D("1"), D("2"), D("3")).total_open == D("6.00")


def test_principal_reduced_oldest_first():
    assert reduce_oldest_first([D("50.00"), D("50.00"), D("50.00")], D("70.00")) == [
        D("0.00"),
        D("30.00"),
        D("50.00"),
    ]


def test_base_rate_table():
    assert base_rate_on(date(2025, 7, 1)) == D("1.27")
    assert base_rate_on(date(2025, 6, 30)) == D("2.27")
    assert base_rate_on(date(2024, 1, 1)) == D("3.62")
    assert base_rate_on(date(2024, 7, 1)) == D("3.37")
    assert base_rate_on(date(2027, 1, 1)) == BASE_RATES[-1][1]  # newest known rate goes on
    starts = [d for d, _ in BASE_RATES]
    assert starts == sorted(starts) and all(d.day == 1 and d.month in (1, 7) for d in starts)


def test_consumer_plus_five_business_plus_nine():
    assert interest_rate(date(2026, 1, 1), business=False) == D("6.27")
    assert interest_rate(date(2026, 1, 1), business=True) == D("10.27")


def test_interest_act_365_single_period():
    # 1000.00 for 365 days at 6.27 % = 62.70; 10 days = 1.7178.. -> 1.72
    assert default_interest(D("1000.00"), date(2025, 12, 31), date(2026, 12, 31), False) == D(
        "62.70"
    )
    assert default_interest(D("1000.00"), date(2026, 1, 15), date(2026, 1, 25), False) == D("1.72")
    assert default_interest(D("1000.00"), date(2026, 1, 15), date(2026, 1, 15), False) == 0


def test_interest_split_at_rate_change():
    # Due 2025-06-20: 10 days in June at 2.27+9, 10 days in July at 1.27+9 (business).
    got = default_interest(D("3650.00"), date(2025, 6, 20), date(2025, 7, 10), True)
    expected = D("3650") * (D("11.27") * 10 + D("10.27") * 10) / 100 / 365
    assert got == expected.quantize(D("0.01"))
    assert got == D("21.54")


@pytest.mark.parametrize("business", [False, True])
def test_claim_interest_sums_items_then_rounds(business):
    items = [(date(2026, 1, 15), D("50.00")), (date(2026, 2, 14), D("50.00"))]
    total = claim_interest(items, date(2026, 3, 1), business)
    single = default_interest(D("50.00"), date(2026, 1, 15), date(2026, 3, 1), business)
    assert total >= single > 0
