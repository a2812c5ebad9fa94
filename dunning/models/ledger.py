"""The claim ledger: the dated events of one claim, replayed into every amount (SPEC §3a).

Pure: no database, no network. Tasks load the events set-based (`dunning/tasks/claim_events.py`)
and store what the board needs; reminders, the partner's claim, the § 498 guard and `paid`
detection all read a `Statement` from `replay`. Nothing else computes amounts.

Events: principal items (an installment or the price, what is owed after refunds, with its
due date and its first day of default), payments (the day they arrived), charges (fees and
costs, each with its day and reason).

Rules (each has a named test in `tests/unit/models/test_ledger.py`):

- **Default begins** (§ 286 BGB) the day after a calendar due date (installments,
  subscriptions, card/SEPA one-time payments); for a charged-back payment the day after the
  chargeback; for `invoice` orders the day after the first reminder's deadline (§ 286 (1)),
  or 30 days after the invoice for a business debtor (§ 286 (3); a consumer only if the
  invoice said so, which the order record does not tell). `default_begins`.
- **Interest** (§§ 288, 289 BGB), where the merchant switched it on: on principal only;
  for each calendar day from the first day of default through the day a payment arrived
  (or `as_of`), on the principal in default open at the start of that day, at that day's
  base rate + 5 points (consumer) or + 9 (business), each day at rate / 365 (366 in a leap
  year). Rounded to cents, half up, once per period: between two payment days, and at
  `as_of`. Interest never accrues on interest, fees or costs (§ 289).
- **Allocation** (§ 367 BGB) on each payment's day: charges arisen by that day (oldest
  first), then the interest accrued to that day, then principal, oldest due first (§ 366
  (2)). Payments of the same day are one payment. What exceeds everything open is a credit
  applied to what arises later, and otherwise reported as `overpaid`.
- **Business debtors**: + 9 points, and the § 288 (5) flat fee of 40.00 EUR as its own
  charge on the first day of default (EUR claims only: the flat fee is a euro amount).
- **Reminder fees** (`reminder_fee`): never on the reminder that creates default (an
  invoice order's first reminder); otherwise the merchant's fee, at most the installation's
  cap.
- **§ 498 BGB** (`termination_guard`): at least two consecutive installments wholly or
  partly in default, and at least 10 % of the price open in default (5 % for a term over
  three years from the order date). Refunds lower what is owed, so a refunded installment
  is never in default.
- **Minimum claim** (`below_minimum`): open principal below the merchant's minimum.

Invariant (a property test): open = principal + charges + interest − payments, never
negative; allocations sum to the payments.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from itertools import pairwise

from dunning.models.base_rates import BaseRates

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
CONSUMER_POINTS = Decimal("5")
BUSINESS_POINTS = Decimal("9")
FLAT_FEE_288_5 = Decimal("40.00")
TERMINATION_NOTICE_DAYS = 14
INVOICE_BUSINESS_DAYS = 30
THREE_YEARS_DAYS = 3 * 365

# Charge kinds, as the partner contract names them.
REMINDER_FEE = "reminder_fee"
CHARGEBACK_FEE = "chargeback_fee"
FLAT_FEE = "flat_fee_288_5"
CANCELLATION_COSTS = "cancellation_costs"


def cents(value: Decimal) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class PrincipalItem:
    ref: str  # stable key of the item within the claim, e.g. "installment-3"
    due_date: date
    amount: Decimal  # owed: the installment (or price) less refunds
    default_from: date | None  # first day of default; None: not (yet) in default
    number: int | None = None  # installment number, where there is a schedule


@dataclass(frozen=True)
class Payment:
    day: date  # the day it arrived (merchant calendar)
    amount: Decimal
    ref: str = ""  # transaction id: the partner is told each payment once, by it


@dataclass(frozen=True)
class Charge:
    kind: str  # reminder_fee | chargeback_fee | flat_fee_288_5 | cancellation_costs
    day: date
    amount: Decimal
    reason: str
    ref: str = ""


@dataclass(frozen=True)
class Ledger:
    items: tuple[PrincipalItem, ...]
    payments: tuple[Payment, ...] = ()
    charges: tuple[Charge, ...] = ()
    business: bool = False
    interest: bool = False
    currency: str = "EUR"


@dataclass(frozen=True)
class InterestPeriod:
    """Interest on one principal base at one rate over consecutive days (both inclusive)."""

    principal_base: Decimal
    start: date
    end: date
    rate_percent: Decimal
    amount: Decimal  # rounded; the periods between two payment days sum to that span's cents

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


@dataclass(frozen=True)
class Allocation:
    day: date
    amount: Decimal  # payments of the day, plus any credit carried in
    to_charges: Decimal
    to_interest: Decimal
    to_principal: Decimal
    left: Decimal  # carried as credit


@dataclass(frozen=True)
class Statement:
    as_of: date
    principal: Decimal  # owed, gross
    charges: tuple[Charge, ...]  # every charge up to as_of, the flat fee included
    interest_periods: tuple[InterestPeriod, ...]
    allocations: tuple[Allocation, ...]
    paid: Decimal  # every payment up to as_of
    open_items: dict[str, Decimal]  # principal still open per item ref
    charges_open: Decimal
    interest_open: Decimal
    overpaid: Decimal
    rates_stale: bool  # interest ran past the base-rate table's known end
    items: tuple[PrincipalItem, ...] = field(default=())

    @property
    def fees(self) -> Decimal:
        return sum((c.amount for c in self.charges if c.kind != CANCELLATION_COSTS), ZERO)

    @property
    def costs(self) -> Decimal:
        return sum((c.amount for c in self.charges if c.kind == CANCELLATION_COSTS), ZERO)

    @property
    def interest(self) -> Decimal:
        return sum((p.amount for p in self.interest_periods), ZERO)

    @property
    def principal_open(self) -> Decimal:
        return sum(self.open_items.values(), ZERO)

    @property
    def total_open(self) -> Decimal:
        return self.principal_open + self.charges_open + self.interest_open

    def in_default(self, item: PrincipalItem) -> bool:
        return (
            item.default_from is not None
            and item.default_from <= self.as_of
            and self.open_items.get(item.ref, ZERO) > 0
        )


def interest_rate(day: date, business: bool, rates: BaseRates) -> Decimal:
    """Percent p.a. on `day`: base rate + 5 points (consumer) or + 9 points (business)."""
    return rates.rate_on(day) + (BUSINESS_POINTS if business else CONSUMER_POINTS)


def default_begins(
    *,
    due_date: date,
    invoice: bool = False,
    business: bool = False,
    chargeback_day: date | None = None,
    first_reminder_deadline: date | None = None,
    invoice_day: date | None = None,
) -> date | None:
    """The first day of default of one principal item, or None while it is not in default."""
    if chargeback_day is not None:
        return chargeback_day + timedelta(days=1)
    if not invoice:
        return due_date + timedelta(days=1)
    candidates = []
    if first_reminder_deadline is not None:
        candidates.append(first_reminder_deadline + timedelta(days=1))
    if business:
        candidates.append((invoice_day or due_date) + timedelta(days=INVOICE_BUSINESS_DAYS + 1))
    return min(candidates) if candidates else None


def reminder_fee(level: int, creates_default: bool, merchant_fee: Decimal, cap: Decimal) -> Decimal:
    """The fee a reminder may carry: none on the reminder that creates default (an invoice
    order's first), else the merchant's fee, never more than the installation's cap."""
    del level  # every level is treated alike; kept for the reader of call sites
    if creates_default:
        return ZERO
    return cents(min(max(merchant_fee, ZERO), cap))


# --- replay -------------------------------------------------------------------------------


def replay(ledger: Ledger, as_of: date, rates: BaseRates) -> Statement:
    """Every amount of the claim on `as_of` (merchant calendar), from its events."""
    items = tuple(sorted(ledger.items, key=lambda i: (i.due_date, i.number or 0, i.ref)))
    open_items = {i.ref: cents(i.amount) for i in items}
    charges = [c for c in ledger.charges if c.day <= as_of]
    defaults = [i.default_from for i in items if i.default_from and i.default_from <= as_of]
    if ledger.business and ledger.currency == "EUR" and defaults:
        first = min(defaults)
        charges.append(Charge(FLAT_FEE, first, FLAT_FEE_288_5, "§ 288 (5) BGB", FLAT_FEE))
    charges.sort(key=lambda c: (c.day, c.kind, c.ref))
    charge_open = [c.amount for c in charges]

    by_day: dict[date, Decimal] = defaultdict(lambda: ZERO)
    for p in ledger.payments:
        if p.day <= as_of and p.amount > 0:
            by_day[p.day] += p.amount
    paid = sum(by_day.values(), ZERO)

    periods: list[InterestPeriod] = []
    allocations: list[Allocation] = []
    interest_open = ZERO
    credit = ZERO
    stale = False
    accrue_from: date | None = min(defaults) if defaults else None

    def accrue(until: date) -> None:
        """Interest from `accrue_from` through `until`, one rounded span."""
        nonlocal interest_open, accrue_from, stale
        if not ledger.interest or accrue_from is None or until < accrue_from:
            return
        span = _span_periods(items, open_items, accrue_from, until, ledger.business, rates)
        periods.extend(span)
        interest_open += sum((p.amount for p in span), ZERO)
        stale = stale or (bool(span) and rates.stale(until))
        accrue_from = until + timedelta(days=1)

    def allocate(day: date, amount: Decimal) -> Decimal:
        """§ 367: charges arisen by `day`, then interest, then principal oldest first."""
        nonlocal interest_open
        rest = amount
        to_charges = to_interest = to_principal = ZERO
        for n, c in enumerate(charges):
            if c.day <= day and rest > 0 and charge_open[n] > 0:
                applied = min(rest, charge_open[n])
                charge_open[n] -= applied
                rest -= applied
                to_charges += applied
        applied = min(rest, interest_open)
        interest_open -= applied
        rest -= applied
        to_interest = applied
        for i in items:
            if rest <= 0:
                break
            applied = min(rest, open_items[i.ref])
            open_items[i.ref] -= applied
            rest -= applied
            to_principal += applied
        if to_charges or to_interest or to_principal or amount != rest:
            allocations.append(Allocation(day, amount, to_charges, to_interest, to_principal, rest))
        return rest

    for day in sorted(by_day):
        accrue(day)
        credit = allocate(day, by_day[day] + credit)
    accrue(as_of)
    if credit > 0:  # something arose after an overpayment: the credit pays it
        credit = allocate(as_of, credit)
    return Statement(
        as_of=as_of,
        principal=sum((cents(i.amount) for i in items), ZERO),
        charges=tuple(charges),
        interest_periods=tuple(periods),
        allocations=tuple(allocations),
        paid=paid,
        open_items=open_items,
        charges_open=sum(charge_open, ZERO),
        interest_open=interest_open,
        overpaid=credit,
        rates_stale=stale,
        items=items,
    )


def _span_periods(
    items: Sequence[PrincipalItem],
    open_items: dict[str, Decimal],
    start: date,
    end: date,
    business: bool,
    rates: BaseRates,
) -> list[InterestPeriod]:
    """The interest of the days start..end (inclusive), split wherever the base in default,
    the rate or the year length changes; the span is rounded once and the cents spread over
    its periods (largest remainder) so that each period can be shown with its amount."""
    cuts = {start, end + timedelta(days=1)}
    cuts.update(d for d in rates.changes_between(start, end))
    cuts.update(i.default_from for i in items if i.default_from and start < i.default_from <= end)
    cuts.update(date(y, 1, 1) for y in range(start.year + 1, end.year + 1))
    exact: list[tuple[Decimal, date, date, Decimal, Decimal]] = []
    for begin, stop in pairwise(sorted(cuts)):
        base = sum(
            (
                open_items[i.ref]
                for i in items
                if i.default_from is not None and i.default_from <= begin
            ),
            ZERO,
        )
        if base <= 0:
            continue
        rate = interest_rate(begin, business, rates)
        days = (stop - begin).days
        year_days = 366 if _leap(begin.year) else 365
        exact.append(
            (base, begin, stop - timedelta(days=1), rate, base * rate * days / 100 / year_days)
        )
    if not exact:
        return []
    total = cents(sum((e[4] for e in exact), Decimal(0)))
    rounded = [e[4].quantize(CENT, rounding=ROUND_DOWN) for e in exact]
    short = int((total - sum(rounded, ZERO)) / CENT)
    by_remainder = sorted(range(len(exact)), key=lambda n: exact[n][4] - rounded[n], reverse=True)
    for n in by_remainder[: max(short, 0)]:
        rounded[n] += CENT
    return [
        InterestPeriod(base, begin, last, rate, amount)
        for (base, begin, last, rate, _), amount in zip(exact, rounded, strict=True)
    ]


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


# --- rules over a statement ---------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleEntry:
    """One installment of the order's whole schedule, for § 498 (not only the claim's)."""

    number: int
    due_date: date


def termination_guard(
    statement: Statement,
    schedule: Iterable[ScheduleEntry],
    order_total: Decimal,
    order_day: date,
) -> bool:
    """§ 498 (1) BGB: two consecutive installments (wholly or partly) in default, and the
    open principal in default at least 10 % of the price (5 % for a term over three years
    from the order date)."""
    entries = sorted(schedule, key=lambda e: e.number)
    if not entries or order_total <= 0:
        return False
    defaulted = {
        i.number: statement.open_items[i.ref]
        for i in statement.items
        if statement.in_default(i) and i.number is not None
    }
    run = best = 0
    for e in entries:
        run = run + 1 if e.number in defaulted else 0
        best = max(best, run)
    if best < 2:
        return False
    long_term = (entries[-1].due_date - order_day).days > THREE_YEARS_DAYS
    share = Decimal("0.05") if long_term else Decimal("0.10")
    return sum(defaulted.values(), ZERO) >= order_total * share


def arrears(statement: Statement) -> Decimal:
    """What the buyer must pay to end the default: the open principal in default plus the
    open charges and interest (named in the termination notice)."""
    in_default = sum(
        (statement.open_items[i.ref] for i in statement.items if statement.in_default(i)), ZERO
    )
    return in_default + statement.charges_open + statement.interest_open


def below_minimum(statement: Statement, minimum: Decimal) -> bool:
    """Only fees or interest left, or principal below the merchant's minimum claim."""
    return statement.principal_open < minimum
