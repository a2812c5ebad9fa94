"""Money rules of a claim: payment allocation (§ 367 BGB) and default interest (§ 288 BGB).

Pure functions over Decimal; amounts are rounded half-up to cents only at the end.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from itertools import pairwise

from dunning.models.base_rates import base_rate_on, rate_changes_between

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
CONSUMER_POINTS = Decimal("5")
BUSINESS_POINTS = Decimal("9")


def cents(value: Decimal) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Allocation:
    """What is still open of each part after the payments, and how they were applied."""

    costs_open: Decimal
    interest_open: Decimal
    principal_open: Decimal
    to_costs: Decimal
    to_interest: Decimal
    to_principal: Decimal
    overpaid: Decimal

    @property
    def total_open(self) -> Decimal:
        return self.costs_open + self.interest_open + self.principal_open


def allocate(paid: Decimal, costs: Decimal, interest: Decimal, principal: Decimal) -> Allocation:
    """Apply `paid` to costs, then interest, then principal (§ 367 Abs. 1 BGB)."""
    rest = max(Decimal(paid), ZERO)
    parts = []
    for owed in (costs, interest, principal):
        owed = max(Decimal(owed), ZERO)
        applied = min(rest, owed)
        rest -= applied
        parts.append((cents(owed - applied), cents(applied)))
    (c_open, c_paid), (i_open, i_paid), (p_open, p_paid) = parts
    return Allocation(c_open, i_open, p_open, c_paid, i_paid, p_paid, cents(rest))


def reduce_oldest_first(amounts: Sequence[Decimal], reduction: Decimal) -> list[Decimal]:
    """Lower a list of principal items by `reduction`, the oldest item first (§ 366 BGB)."""
    rest = max(Decimal(reduction), ZERO)
    out = []
    for amount in amounts:
        applied = min(rest, Decimal(amount))
        rest -= applied
        out.append(cents(Decimal(amount) - applied))
    return out


def interest_rate(day: date, business: bool) -> Decimal:
    """Default interest in percent p.a. on `day`: base rate + 5 (consumer) or + 9 points."""
    return base_rate_on(day) + (BUSINESS_POINTS if business else CONSUMER_POINTS)


def default_interest_exact(amount: Decimal, due_date: date, until: date, business: bool) -> Decimal:
    """Interest (unrounded) on `amount` for the days after `due_date` up to and including
    `until`, each base-rate period at its own rate, act/365."""
    if amount <= 0 or until <= due_date:
        return Decimal(0)
    start = due_date + timedelta(days=1)  # in default from the day after the due date
    bounds = [start, *rate_changes_between(start, until), until + timedelta(days=1)]
    total = Decimal(0)
    for begin, end in pairwise(bounds):
        days = (end - begin).days
        if days > 0:
            total += Decimal(amount) * interest_rate(begin, business) / 100 * days / 365
    return total


def default_interest(amount: Decimal, due_date: date, until: date, business: bool) -> Decimal:
    return cents(default_interest_exact(amount, due_date, until, business))


def claim_interest(items: Iterable[tuple[date, Decimal]], until: date, business: bool) -> Decimal:
    """Interest over all principal items (due date, amount), rounded once at the end."""
    return cents(sum((default_interest_exact(a, d, until, business) for d, a in items), Decimal(0)))
